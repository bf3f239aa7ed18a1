"""Running the test MCP server (`tests/helpers/mcp_server.py`): its TOML, its process, its calls."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from app.store.db import PROJECT_ROOT

SERVER_MODULE = "tests.helpers.mcp_server"
FAST_RETRIES = """
[mcp]
connect_timeout_seconds = 15
health_check_seconds = 30
retry_initial_seconds = 0.2
retry_max_seconds = 0.5
"""
"""Reconnect within a second, so fault tests need not wait for the default backoff."""


def stdio_server_toml(name: str, calls: Path, extra: str = "") -> str:
    """A `[mcp_servers.NAME]` table that runs the test server as a subprocess over stdio."""
    return f"""
[mcp_servers.{name}]
command = {json.dumps(sys.executable)}
args = ["-m", "{SERVER_MODULE}"]
cwd = {json.dumps(str(PROJECT_ROOT))}
env = {{ MCP_CALLS_FILE = {json.dumps(str(calls))} }}
{extra}
"""


def http_server_toml(name: str, port: int, extra: str = "") -> str:
    return f"""
[mcp_servers.{name}]
url = "http://127.0.0.1:{port}/mcp"
{extra}
"""


def write_toml(directory: Path, text: str) -> Path:
    path = directory / "agent.toml"
    path.write_text(text)
    return path


def read_calls(path: Path) -> list[dict[str, Any]]:
    """Every call the test server received, oldest first."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def wait_for_call(path: Path, tool: str) -> dict[str, Any]:
    """The first call of `tool` the server recorded, waiting (up to 20 s) for it to arrive."""
    async with asyncio.timeout(20):
        while True:
            for call in read_calls(path):
                if call["tool"] == tool:
                    return call
            await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def is_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class HttpMcpServer:
    """The test server over HTTP on a loopback port, in a process of its own."""

    def __init__(self, port: int, calls: Path, transport: str = "http") -> None:
        self.port = port
        self.calls = calls
        self.transport = transport
        """`http` (streamable HTTP) or `sse`."""
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{'sse' if self.transport == 'sse' else 'mcp'}"

    async def start(self) -> None:
        env = {**os.environ, "MCP_CALLS_FILE": str(self.calls)}
        self.process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", SERVER_MODULE, f"--{self.transport}", str(self.port)),
            cwd=PROJECT_ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(30):  # until it listens
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    await asyncio.sleep(0.1)
                    continue
                writer.close()
                await writer.wait_closed()
                return

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self.process = None

    async def __aenter__(self) -> HttpMcpServer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.kill()
