"""What an MCP tool adds to a turn: one turn that calls a built-in tool against one that calls a
tool of a local MCP server over stdio, over streamable HTTP on loopback, and over stdio with the
tool list fetched every turn (`cache_tools_list = false`).

Each turn is `POST /chatkit` in process (`threads.create`, the fake model without delay: a tool
call, then an answer; the thread and its items written to the database), so the figure is the
server's own cost around the tool. The MCP server is `tests/helpers/mcp_server.py` (FastMCP).
Variants alternate, three rounds each; medians with the 10th–90th percentile spread.

Run: `uv run python -m bench.mcp_overhead [DATABASE_URL] [--turns N]` (a migrated database;
SQLite in a temporary directory if omitted).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import uuid4

import httpx

from app.agent.config import McpServerConfig
from app.agent.mcp import build_server
from app.store.db import PROJECT_ROOT
from tests.conftest import make_settings
from tests.helpers.apps import running_app
from tests.helpers.chatkit import create_thread_req, post
from tests.helpers.database import migrate
from tests.helpers.mcp import (
    SERVER_MODULE,
    HttpMcpServer,
    http_server_toml,
    stdio_server_toml,
)
from tests.helpers.server import free_port

BUILT_IN = ("built-in tool (get_current_user)", "/get_current_user")
VARIANTS = [
    BUILT_IN,
    ("MCP tool over stdio", '/add {"a": 1, "b": 2}'),
    ("MCP tool over streamable HTTP", '/add {"a": 1, "b": 2}'),
    ("MCP tool over stdio, list uncached", '/add {"a": 1, "b": 2}'),
]
ROUNDS = 3


@asynccontextmanager
async def app_for(variant: str, url: str, work: Path) -> AsyncIterator[httpx.AsyncClient]:
    calls = work / "calls.jsonl"
    http: HttpMcpServer | None = None
    if variant == VARIANTS[0][0]:
        toml = ""
    elif "HTTP" in variant:
        http = HttpMcpServer(free_port(), calls)
        await http.start()
        toml = http_server_toml("bench", http.port)
    else:
        extra = "cache_tools_list = false" if "uncached" in variant else ""
        toml = stdio_server_toml("bench", calls, extra)
    (work / "agent.toml").write_text(toml)
    settings = make_settings(
        url,
        agent_config=work / "agent.toml",
        rate_limit_requests_per_minute=0,
        rate_limit_daily_messages="*=unlimited",
        max_concurrent_streams_per_user=0,
    )
    try:
        async with running_app(settings) as running:
            running.services.assistant.title_model = None  # no title call in the figure
            yield running.client
    finally:
        if http is not None:
            await http.kill()


async def turn(client: httpx.AsyncClient, message: str) -> float:
    start = time.perf_counter()
    response = await post(client, f"bench-{uuid4().hex[:8]}", create_thread_req(message))
    elapsed = time.perf_counter() - start
    assert response.status_code == 200 and "The tool answered" in response.text, response.text
    return elapsed * 1000


async def main(url: str, turns: int) -> None:
    samples: dict[str, list[float]] = {name: [] for name, _ in VARIANTS}
    round_medians: dict[str, list[float]] = {name: [] for name, _ in VARIANTS}
    for round_number in range(ROUNDS):
        for name, message in VARIANTS:
            with tempfile.TemporaryDirectory() as work:
                async with app_for(name, url, Path(work)) as client:
                    for _ in range(3):
                        await turn(client, message)  # warm-up
                    times = [await turn(client, message) for _ in range(turns)]
            samples[name] += times
            round_medians[name].append(statistics.median(times))
            out(f"round {round_number + 1}: {name:36} median {statistics.median(times):6.1f} ms")
    out("")
    out(f"{'turn':36} {'median':>7} {'p10-p90':>15} {'rounds':>22} {'vs built-in':>12}")
    base = statistics.median(samples[BUILT_IN[0]])
    for name, times in samples.items():
        deciles = statistics.quantiles(times, n=10)
        rounds = ", ".join(f"{m:.1f}" for m in round_medians[name])
        extra = statistics.median(times) - base
        out(
            f"{name:36} {statistics.median(times):6.1f}  {deciles[0]:6.1f}-{deciles[-1]:6.1f}  "
            f"{rounds:>22} {extra:+10.1f} ms"
        )
    with tempfile.TemporaryDirectory() as work:
        await direct_calls(Path(work))


async def direct_calls(work: Path, calls_per_server: int = 200) -> None:
    """One `call_tool` round trip on a connected server, without a turn around it; and how long
    connecting (starting the subprocess, initialize, listing the tools) takes."""
    out("")
    out(f"{'direct call of add':36} {'median':>7} {'p10-p90':>15} {'connect':>10}")
    async with HttpMcpServer(free_port(), work / "calls.jsonl") as http:
        configs = {
            "stdio": McpServerConfig(
                command=sys.executable, args=["-m", SERVER_MODULE], cwd=str(PROJECT_ROOT)
            ),
            "streamable HTTP": McpServerConfig(url=http.url),
        }
        for name, config in configs.items():
            server = build_server(name, config, connect_timeout_seconds=30)
            start = time.perf_counter()
            await server.connect()  # type: ignore[no-untyped-call]
            await server.list_tools()
            connect = (time.perf_counter() - start) * 1000
            try:
                times = []
                for _ in range(calls_per_server):
                    start = time.perf_counter()
                    await server.call_tool("add", {"a": 1, "b": 2})
                    times.append((time.perf_counter() - start) * 1000)
            finally:
                await server.cleanup()  # type: ignore[no-untyped-call]
            deciles = statistics.quantiles(times, n=10)
            out(
                f"{name:36} {statistics.median(times):6.2f}  {deciles[0]:6.2f}-"
                f"{deciles[-1]:6.2f}  {connect:7.0f} ms"
            )


def out(line: str) -> None:
    sys.stdout.write(line + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("database", nargs="?")
    parser.add_argument("--turns", type=int, default=40)
    args = parser.parse_args()
    database = args.database or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/b.db"
    migrate(database)
    asyncio.run(main(database, args.turns))
