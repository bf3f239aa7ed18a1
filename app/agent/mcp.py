"""MCP servers for the app's lifespan: connected once, shared by every turn, kept connected.

The servers are the Agents SDK's own classes (`MCPServerStdio`, `MCPServerStreamableHttp`,
`MCPServerSse`), built from the configuration (`build_server`). `McpServers` gives each one a
task of its own that owns its connection, since the MCP SDK's transports must be opened and
closed by the same task:

- at startup every server connects in parallel; startup waits for them at most
  `[mcp] connect_timeout_seconds`;
- a server that fails to connect is left out, logged, and retried in the background with
  backoff (`retry_initial_seconds`, doubling to `retry_max_seconds`);
- a connected server is checked every `health_check_seconds` (and at once after a failed call)
  by listing its tools; one that stopped answering is closed and reconnected the same way, and
  its tools are missing from turns meanwhile;
- on reconnect its tool list is fetched afresh;
- shutdown closes every server (its subprocess too) from its own task.

The SDK's `MCPServerManager` connects in parallel and drops failed servers, but neither notices
a server that dies later nor retries in the background, which a long-running web app needs.

A failed call (`tool_failed`) reaches the model as a failed call and the user as a notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx2
from agents import RunContextWrapper, RunHooks, Tool
from agents.exceptions import UserError
from agents.mcp import (
    MCPServer,
    MCPServerSse,
    MCPServerSseParams,
    MCPServerStdio,
    MCPServerStdioParams,
    MCPServerStreamableHttp,
    MCPServerStreamableHttpParams,
    create_static_tool_filter,
)
from agents.tool import FunctionTool, ToolOriginType, get_function_tool_origin
from agents.tool_context import ToolContext
from chatkit.agents import AgentContext
from chatkit.types import NoticeEvent, ProgressUpdateEvent
from mcp import MCPError
from mcp import Tool as MCPTool
from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from app.agent.config import McpConfig, McpServerConfig
from app.agent.context import note_tool_failure

logger = logging.getLogger(__name__)

CALLER_ID: ContextVar[str | None] = ContextVar("mcp_caller_id", default=None)
"""The user a turn runs for: set around each run, read by `forward_user_id` servers."""

State = Literal["connecting", "connected", "down"]
PRINTABLE_ASCII = "".join(map(chr, range(0x21, 0x7F)))


def build_server(
    name: str, config: McpServerConfig, *, connect_timeout_seconds: float
) -> MCPServer:
    """The Agents SDK's server for one configured MCP server (not connected yet)."""
    common: dict[str, Any] = {
        "name": name,
        "cache_tools_list": config.cache_tools_list,
        "client_session_timeout_seconds": config.timeout_seconds,
        "require_approval": _approval_policy(config.approval),
        "tool_filter": (
            create_static_tool_filter(
                allowed_tool_names=config.allowed_tools,
                blocked_tool_names=config.blocked_tools or None,
            )
            if config.allowed_tools is not None or config.blocked_tools
            else None
        ),
    }
    if config.transport == "stdio":
        assert config.command is not None  # validated
        stdio = MCPServerStdioParams(command=config.command, args=config.args, env=config.env)
        if config.cwd:
            stdio["cwd"] = config.cwd
        return MCPServerStdio(stdio, **common)
    assert config.url is not None  # validated
    factory = caller_id_client_factory(header) if (header := config.user_id_header) else None
    if config.transport == "sse":
        sse = MCPServerSseParams(
            url=config.url, headers=config.headers, timeout=connect_timeout_seconds
        )
        if factory:
            sse["httpx_client_factory"] = factory
        return MCPServerSse(sse, **common)
    http = MCPServerStreamableHttpParams(
        url=config.url, headers=config.headers, timeout=connect_timeout_seconds
    )
    if factory:
        http["httpx_client_factory"] = factory
    return MCPServerStreamableHttp(http, **common)


def _approval_policy(approval: bool | frozenset[str]) -> bool | dict[str, bool]:
    return approval if isinstance(approval, bool) else dict.fromkeys(sorted(approval), True)


def caller_id_client_factory(header: str) -> Callable[..., httpx2.AsyncClient]:
    """HTTP clients that send the caller's id (`CALLER_ID`) in `header` with each request.

    The connection is shared by every user, but the MCP SDK sends each message in the context
    of the task that sent it: a call made during a user's turn carries that user's id, while
    the connection's own requests (initialize, the health check) carry none.
    """
    hook = caller_id_hook(header)

    def create(
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=headers,
            timeout=timeout,
            auth=auth,
            follow_redirects=False,
            event_hooks={"request": [hook]},
        )

    return create


def caller_id_hook(header: str) -> Callable[[httpx2.Request], Awaitable[None]]:
    """Sets `header` to the caller's id, or removes it outside a turn; a non-ASCII id is
    percent-encoded (UTF-8)."""

    async def add_caller(request: httpx2.Request) -> None:
        request.headers.pop(header, None)
        if (user_id := CALLER_ID.get()) is not None:
            request.headers[header] = quote(user_id, safe=PRINTABLE_ASCII)

    return add_caller


@dataclass(eq=False)
class ManagedServer:
    """One server, its state, and the task that keeps it connected."""

    server: MCPServer
    state: State = "connecting"
    error: str | None = None
    """Why it is down: the failure's type and message (never logged with secrets: the SDK
    strips credentials from its errors)."""
    tool_names: frozenset[str] = frozenset()
    check_now: asyncio.Event = field(default_factory=asyncio.Event)
    tried: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the first connection attempt has ended, either way."""
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        """Turns list the server's tools through `_list_for_turn`, which never fails."""
        self.list_tools = self.server.list_tools
        setattr(self.server, "list_tools", self._list_for_turn)  # noqa: B010

    @property
    def name(self) -> str:
        return self.server.name

    async def _list_for_turn(
        self, run_context: RunContextWrapper[Any] | None = None, agent: Any = None
    ) -> list[MCPTool]:
        """The tools a turn gets: none while the server is down, rather than a failed turn.

        A turn holds the servers that were connected when it started; one may go down before
        the turn's next model call lists their tools again.
        """
        if self.state != "connected":
            return []
        try:
            return await self.list_tools(run_context, agent)
        except Exception as exc:  # gone since the turn started: leave its tools out
            logger.warning("MCP server %s: listing its tools failed (%s)", self.name, exc)
            self.check_now.set()
            return []


class McpServers:
    """The app's MCP servers: which are connected now, and the tasks that keep them so."""

    def __init__(
        self,
        servers: Iterable[MCPServer],
        config: McpConfig,
        *,
        reserved_tool_names: Iterable[str] = (),
    ) -> None:
        self.config = config
        self.managed = [ManagedServer(server) for server in servers]
        self.reserved_tool_names = frozenset(reserved_tool_names)
        """Names MCP tools may not take (the built-in tools'), unless prefixed."""
        self._closing = asyncio.Event()

    async def start(self) -> None:
        """Connect every server in parallel; wait for them at most `connect_timeout_seconds`."""
        for managed in self.managed:
            managed.task = asyncio.create_task(
                self._keep_connected(managed), name=f"mcp server {managed.name}"
            )
        if self.managed:
            waits = [asyncio.create_task(managed.tried.wait()) for managed in self.managed]
            _, pending = await asyncio.wait(waits, timeout=self.config.connect_timeout_seconds)
            for wait in pending:
                wait.cancel()
            states = {managed.name: managed.state for managed in self.managed}
            logger.info("MCP servers at startup: %s", states)

    def connected(self) -> list[MCPServer]:
        """The servers whose tools the next turn gets."""
        return [managed.server for managed in self.managed if managed.state == "connected"]

    def states(self) -> dict[str, State]:
        return {managed.name: managed.state for managed in self.managed}

    def check_soon(self) -> None:
        """Check every connected server now (a call just failed: one may be gone)."""
        for managed in self.managed:
            managed.check_now.set()

    async def aclose(self) -> None:
        """Close every server from its own task; cancel what does not finish in time."""
        self._closing.set()
        for managed in self.managed:
            managed.check_now.set()
        tasks = [managed.task for managed in self.managed if managed.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.config.connect_timeout_seconds)
        for task in pending:
            logger.warning("MCP server %s did not close in time: cancelled", task.get_name())
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def tool_failed(self, ctx: RunContextWrapper[Any], error: Exception) -> str:
        """An MCP tool call failed: tell the user (a notice), check the servers, tell the model.

        The Agents SDK calls this as the MCP tools' `failure_error_function`; the model reads
        what it returns as the call's output.
        """
        note_tool_failure(ctx)
        tool = ctx.tool_name if isinstance(ctx, ToolContext) else "an MCP tool"
        reason, detail = failure_reason(error)
        self.check_soon()
        logger.warning("MCP tool %s failed: %s", tool, detail)
        if isinstance(ctx.context, AgentContext):
            await ctx.context.stream(
                NoticeEvent(level="warning", message=f"The tool {tool} {reason}.")
            )
        return f"Error: the tool call failed: {tool} {reason} ({detail})."

    async def _keep_connected(self, managed: ManagedServer) -> None:
        delay = self.config.retry_initial_seconds
        try:
            while not self._closing.is_set():
                try:
                    await self._connect(managed)
                except Exception as exc:  # any failure to connect: down, retried later
                    await self._mark_down(managed, exc, f"retrying in {delay:.3g} s")
                    managed.tried.set()
                    await self._sleep(delay * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, self.config.retry_max_seconds)
                    continue
                delay = self.config.retry_initial_seconds
                managed.tried.set()
                error = await self._watch(managed)
                if error is not None:
                    await self._mark_down(managed, error, "reconnecting")
        finally:
            managed.state = "down"
            await _quietly(managed.server.cleanup)

    async def _connect(self, managed: ManagedServer) -> None:
        server = managed.server
        async with asyncio.timeout(self.config.connect_timeout_seconds):
            await server.connect()  # type: ignore[no-untyped-call]  # (untyped in the SDK)
            if invalidate := getattr(server, "invalidate_tools_cache", None):
                invalidate()  # a reconnected server's tools are fetched anew
            tools = await managed.list_tools()
        names = frozenset(tool.name for tool in tools)
        if not self.config.prefix_tool_names:
            taken = self.reserved_tool_names.union(
                *(other.tool_names for other in self.managed if other.state == "connected")
            )
            if clash := sorted(names & taken):
                raise UserError(
                    f"its tools {', '.join(clash)} have the names of other tools: rename them, "
                    "or set [mcp] prefix_tool_names = true"
                )
        managed.tool_names, managed.state, managed.error = names, "connected", None
        logger.info("MCP server %s connected: %d tools", managed.name, len(names))

    async def _watch(self, managed: ManagedServer) -> Exception | None:
        """Wait until the server stops answering (its error) or the app closes (None)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    managed.check_now.wait(), timeout=self.config.health_check_seconds
                )
            managed.check_now.clear()
            if self._closing.is_set():
                return None
            try:
                await self._check(managed.server)
            except Exception as exc:  # any failure of the check means "gone"
                return exc

    async def _check(self, server: MCPServer) -> None:
        """List the tools on the session itself: the SDK's `list_tools` may answer from its
        cache, and waits behind calls in progress on HTTP servers."""
        session = getattr(server, "session", None)
        if session is None:
            raise ConnectionError("not connected")
        timeout = getattr(server, "client_session_timeout_seconds", None) or 30.0
        async with asyncio.timeout(timeout):
            await session.list_tools()

    async def _mark_down(self, managed: ManagedServer, error: BaseException, then: str) -> None:
        managed.state, managed.tool_names = "down", frozenset()
        managed.error = f"{type(error).__name__}: {error}"[:300]
        logger.warning("MCP server %s is down (%s); %s", managed.name, managed.error, then)
        await _quietly(managed.server.cleanup)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, unless the app closes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)


async def _quietly(close: Callable[[], Awaitable[Any]]) -> None:
    """Close a server; a failure to close one already broken is logged, not raised."""
    try:
        await close()
    except Exception as exc:  # the server is being dropped either way
        logger.info("Closing an MCP server failed: %s", type(exc).__name__)


def failure_reason(error: BaseException) -> tuple[str, str]:
    """What the user is told about a failed call, and the details the model and log get."""
    detail = f"{type(error).__name__}: {error}"[:300]
    if isinstance(error, TimeoutError) or (
        isinstance(error, MCPError) and error.code == REQUEST_TIMEOUT
    ):
        return "did not answer in time", detail
    if (isinstance(error, MCPError) and error.code == CONNECTION_CLOSED) or isinstance(
        error, httpx2.TransportError | ConnectionError
    ):
        return "is unreachable right now", detail
    if isinstance(error, UserError) and any(
        words in str(error) for words in ("Connection", "reach", "not initialized")
    ):
        return "is unreachable right now", detail
    return "failed", detail


class McpProgress(RunHooks[Any]):
    """Shows a progress line while an MCP tool runs (the built-in tools show their own)."""

    async def on_tool_start(self, context: RunContextWrapper[Any], agent: Any, tool: Tool) -> None:
        if not isinstance(tool, FunctionTool) or not isinstance(context.context, AgentContext):
            return
        origin = get_function_tool_origin(tool)
        if origin is not None and origin.type == ToolOriginType.MCP:
            server = f" ({origin.mcp_server_name})" if origin.mcp_server_name else ""
            await context.context.stream(
                ProgressUpdateEvent(text=f"Using {tool.name}{server}…", icon="bolt")
            )
