"""The assistant: the agent (configured or from `AGENT_FACTORY`), its MCP servers, one turn.

The model comes from `app.agent.model` (the provider's client and API); Agents SDK tracing is
off, so nothing leaves the machine but the model requests (and the MCP servers' calls), unless
OpenTelemetry tracing is on: then a sampled request's run is traced (`app/observability`).
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import logging
from typing import Any, TypeVar

from agents import (
    Agent,
    Model,
    RunConfig,
    RunContextWrapper,
    Runner,
    RunState,
    Tool,
    TResponseInputItem,
)
from agents.agent import MCPConfig
from agents.result import RunResultStreaming
from chatkit.errors import CustomStreamError

from app.agent.context import AssistantContext
from app.agent.errors import not_configured
from app.agent.factory import AgentSetup, agent_from_factory
from app.agent.fake_model import FakeModel
from app.agent.mcp import CALLER_ID, McpProgress, McpServers, build_server
from app.agent.title import Title, write_title
from app.config import ModelApi
from app.context import RequestContext
from app.observability.agent_metrics import (
    MeteredModel,
    count_tool_call,
    noting_default_failures,
)
from app.observability.tracing import sampled_here

logger = logging.getLogger(__name__)

MAX_TURNS = 10
"""Model calls per user message; a loop of tool calls beyond this ends with an error."""
M = TypeVar("M", bound=Model | str | None)


class Assistant:
    """Runs the agent for one turn, with the MCP servers connected now, and writes titles.

    Built with the configured agent; `start()`, once before the first turn (the app's lifespan),
    puts `AGENT_FACTORY`'s agent in its place if one is set and connects the MCP servers (the
    configured ones and the agent's own); `aclose()` closes them.
    """

    def __init__(self, setup: AgentSetup) -> None:
        config = setup.config
        self.setup = setup
        self.mcp = McpServers([], config.mcp)
        self.api: ModelApi = setup.model_client.api if setup.model_client else "responses"
        """What the model input must fit: the fake model reads Responses API items."""
        self.not_configured = not_configured(setup.settings.model_provider)
        self.history_window = config.history_window
        self.metered = setup.settings.metrics_enabled
        """Whether model calls are counted (`app/observability/agent_metrics.py`)."""
        self.tier_models: dict[str, Model | None] = {
            tier: self._meter(setup.model_named(name)) for tier, name in config.tier_models.items()
        }
        self.titles = config.titles.enabled
        self.run_config = RunConfig(
            tracing_disabled=True,
            trace_include_sensitive_data=False,
            tool_error_formatter=noting_default_failures,  # the SDK's message kept, always
        )
        self.traced_run_config: RunConfig | None = None
        """The run config of a sampled request's run, once `trace_runs()` is called."""
        self.hooks = TurnHooks(metered=self.metered)
        self._serve(setup.default_agent())

    def _serve(self, agent: Agent[AssistantContext]) -> None:
        """Run turns with `agent` (its MCP servers are in `self.mcp`), and titles with its model
        unless the configuration names one."""
        mcp_config: MCPConfig = {
            "failure_error_function": self._tool_failed,
            "include_server_in_tool_names": self.setup.config.mcp.prefix_tool_names,
        }
        self.agent = agent.clone(
            model=self._meter(agent.model),
            mcp_servers=[],
            mcp_config={**mcp_config, **agent.mcp_config},
        )
        titles = self.setup.config.titles
        title_model = self.setup.model_named(titles.model) if titles.model else None
        model = agent.model.inner if isinstance(agent.model, MeteredModel) else agent.model
        title_model = title_model or (model if isinstance(model, Model) else None)
        # Titles cost a model call; the fake model's would be noise, so it gets the fallback.
        by_words = not titles.by_model or isinstance(title_model, FakeModel)
        self.title_model = None if by_words else self._meter(title_model)

    def _meter(self, model: M) -> M:
        """`model`, counted by `MeteredModel` when METRICS_ENABLED (a name is left as it is)."""
        if self.metered and isinstance(model, Model) and not isinstance(model, MeteredModel):
            return MeteredModel(model)  # type: ignore[return-value]
        return model

    def trace_runs(self) -> None:
        """Let the Agents SDK trace the runs of sampled requests (and runs outside any request),
        for the processor `app/observability` registers in place of its export to OpenAI; still
        without inputs and outputs. An unsampled request's run is not traced at all: its spans
        would be dropped, after OpenInference had serialised the run's input for them."""
        self.traced_run_config = dataclasses.replace(self.run_config, tracing_disabled=False)

    async def start(self) -> None:
        """Build `AGENT_FACTORY`'s agent, if set, and connect the MCP servers.

        Logs the resolved configuration once (`${NAME}` references unexpanded: no secrets).
        """
        config, factory = self.setup.config, self.setup.settings.agent_factory
        agent = self.agent
        if factory:
            agent = await agent_from_factory(factory, self.setup)
            self.tier_models = {}  # the factory's agent has the model it chose
        summary = {**config.summary, "agent_factory": factory}
        logger.info("Agent configuration: %s", json.dumps(summary, default=str))
        servers = [
            build_server(name, server, connect_timeout_seconds=config.mcp.connect_timeout_seconds)
            for name, server in config.mcp_servers.items()
        ]
        reserved = [tool.name for tool in agent.tools if hasattr(tool, "name")]
        self.mcp = McpServers(
            [*servers, *agent.mcp_servers], config.mcp, reserved_tool_names=reserved
        )
        self._serve(agent)
        await self.mcp.start()

    async def _tool_failed(self, ctx: RunContextWrapper[Any], error: Exception) -> str:
        return await self.mcp.tool_failed(ctx, error)

    def agent_for(self, caller: RequestContext) -> Agent[AssistantContext]:
        """The agent for one turn: the caller's tier's model, the MCP servers connected now."""
        model = self.tier_models.get(caller.tier, self.agent.model)
        servers = self.mcp.connected()
        if model is self.agent.model and not servers:
            return self.agent
        return self.agent.clone(model=model, mcp_servers=servers)

    def run(
        self,
        agent_input: list[TResponseInputItem] | RunState[AssistantContext, Any],
        context: AssistantContext,
    ) -> RunResultStreaming:
        """Start a turn, or resume one from its state (`app/agent/approvals.py`)."""
        agent = self.agent_for(context.request_context)
        if agent.model is None:
            raise CustomStreamError(self.not_configured, allow_retry=False)
        # The run's task starts in a copy of this context, with the caller's id for MCP
        # servers that forward it (`forward_user_id`).
        run_context = contextvars.copy_context()
        run_context.run(CALLER_ID.set, context.request_context.user_id)
        return run_context.run(
            Runner.run_streamed,
            agent,
            agent_input,
            context=context,
            max_turns=MAX_TURNS,
            run_config=self._run_config(),
            hooks=self.hooks,
        )

    def _run_config(self) -> RunConfig:
        if self.traced_run_config is not None and sampled_here():
            return self.traced_run_config
        return self.run_config

    async def title(self, text: str) -> Title:
        return await write_title(self.title_model, text)

    def tool_servers(self) -> dict[str, str]:
        """Each MCP server's state: `connecting`, `connected` or `down`."""
        return dict(self.mcp.states())

    async def aclose(self) -> None:
        await self.mcp.aclose()


class TurnHooks(McpProgress):
    """The run's hooks: MCP tools' progress lines, and, when METRICS_ENABLED, every tool call
    counted as it ends."""

    def __init__(self, *, metered: bool) -> None:
        self.metered = metered

    async def on_tool_end(
        self, context: RunContextWrapper[Any], agent: Any, tool: Tool, result: object
    ) -> None:
        if self.metered:
            count_tool_call(context, tool)
