"""Running the test MCP server (`tests/helpers/mcp_server.py`): its TOML, its process, its calls."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from app.store.db import PROJECT_ROOT
from tests.helpers.server import ServerProcess, base_environment, start_server

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
        self.process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{'sse' if self.transport == 'sse' else 'mcp'}"

    async def start(self) -> None:
        """Start it, and wait until it listens (its log is beside the calls file)."""
        self.process = start_server(
            [sys.executable, "-m", SERVER_MODULE, f"--{self.transport}", str(self.port)],
            port=self.port,
            env=base_environment(MCP_CALLS_FILE=str(self.calls)),
            cwd=PROJECT_ROOT,
            log_path=self.calls.with_name(f"mcp-server-{self.port}.log"),
            ready_path=None,
        )
        await asyncio.to_thread(self.process.wait_until_listening)

    async def kill(self) -> None:
        """Gone at once (SIGKILL), as a crashed server is."""
        if self.process is not None:
            self.process.signal(signal.SIGKILL)
            await asyncio.to_thread(self.process.wait, 10)
        self.process = None

    async def __aenter__(self) -> HttpMcpServer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.kill()
