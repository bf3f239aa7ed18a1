"""A real MCP server for tests and the bench, built with the `mcp` package's `MCPServer` (FastMCP).

Run it over stdio (`python -m tests.helpers.mcp_server`), streamable HTTP on loopback
(`--http PORT`, at `/mcp`) or SSE (`--sse PORT`, at `/sse`). Each call is appended, as one JSON
line, to the file named by `MCP_CALLS_FILE` (when set): the tool, its arguments, the
`X-User-Id` and `X-Test-Secret` headers it arrived with (HTTP only) and the server's pid, so a
test can assert what the server received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("Test tools")


def record(tool: str, arguments: dict[str, Any], ctx: Context | None = None) -> None:
    path = os.environ.get("MCP_CALLS_FILE")
    if not path:
        return
    headers = ctx.headers if ctx is not None else None
    entry = {
        "tool": tool,
        "arguments": arguments,
        "user_id": headers.get("x-user-id") if headers else None,
        "secret": headers.get("x-test-secret") if headers else None,
        "env": os.environ.get("TEST_MCP_GREETING"),
        "pid": os.getpid(),
    }
    with open(path, "a", encoding="utf-8") as calls:
        calls.write(json.dumps(entry) + "\n")


@server.tool()
async def add(a: int, b: int, ctx: Context) -> int:
    """Add two numbers."""
    record("add", {"a": a, "b": b}, ctx)
    return a + b


@server.tool(name="get-greeting")
async def get_greeting(name: str, ctx: Context) -> str:
    """Greet someone (the greeting comes from the server's environment)."""
    record("get-greeting", {"name": name}, ctx)
    return f"{os.environ.get('TEST_MCP_GREETING', 'Hello')}, {name}!"


@server.tool()
async def slow(seconds: float, ctx: Context) -> str:
    """Wait, then answer."""
    record("slow", {"seconds": seconds}, ctx)
    await asyncio.sleep(seconds)
    return f"waited {seconds}s"


@server.tool()
async def fail(message: str, ctx: Context) -> str:
    """Always fails: the result is an error (`isError`) saying `message`."""
    record("fail", {"message": message}, ctx)
    raise ToolError(message)


@server.tool()
async def delete_everything(ctx: Context) -> str:
    """A tool that configurations block."""
    record("delete_everything", {}, ctx)
    return "deleted"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP")
    parser.add_argument("--sse", type=int, metavar="PORT", help="serve the SSE transport")
    args = parser.parse_args()
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    elif args.sse:
        server.run("sse", host="127.0.0.1", port=args.sse)
    else:
        server.run()


if __name__ == "__main__":
    main()
