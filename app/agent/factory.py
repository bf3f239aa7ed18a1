"""Building the agent: the one the configuration describes, or the one `AGENT_FACTORY` returns.

`AGENT_FACTORY=package.module:function` names a function of yours, called once at startup:

    def build(setup: AgentSetup) -> agents.Agent[AssistantContext]  # or `async def`

`setup` holds the settings, the resolved configuration and the configured provider's models:
start from `setup.default_agent()` (the configured agent) and `clone` it, or build your own.
The app then uses that agent for every turn, as it is, except that:

- its `model`, when unset or a name, is resolved through the configured provider
  (`MODEL_PROVIDER`, so the fake model and Azure work too);
- the configured MCP servers are added to each turn (the connected ones), and MCP servers the
  agent holds itself are taken over: connected at startup, checked, reconnected, closed.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from agents import Agent, Model, ModelSettings, RunContextWrapper, StopAtTools

from app.agent.config import AgentConfig
from app.agent.context import AssistantContext
from app.agent.model import ModelClient
from app.agent.tools import CLIENT_TOOLS, TOOL_GROUPS, TOOLS
from app.config import ConfigurationError, Settings


def build_agent(
    config: AgentConfig, model: Model | None, model_settings: ModelSettings | None = None
) -> Agent[AssistantContext]:
    """The agent `config` describes; `model_settings` are the provider's, under the file's."""
    base_instructions = config.instructions

    def instructions(
        wrapper: RunContextWrapper[AssistantContext], _agent: Agent[AssistantContext]
    ) -> str:
        caller = wrapper.context.request_context
        extra = [f"The user's name is {caller.name}."] if caller.name else []
        if caller.locale:
            extra.append(f"The user's browser language is {caller.locale}: answer in it.")
        return "\n".join([base_instructions, *extra])

    switches = config.tools.model_dump()
    off = {
        tool.name for group, tools in TOOL_GROUPS.items() if not switches[group] for tool in tools
    }
    tools = [tool for tool in TOOLS if tool.name not in off]  # a tool in no group is always on
    client_tools = [tool.name for tool in tools if tool.name in CLIENT_TOOLS]
    return Agent[AssistantContext](
        name=config.name,
        instructions=instructions,
        model=model,
        model_settings=(model_settings or ModelSettings()).resolve(config.model_settings),
        tools=list(tools),
        tool_use_behavior=(
            StopAtTools(stop_at_tool_names=client_tools) if client_tools else "run_llm_again"
        ),
    )


@dataclass(frozen=True)
class AgentSetup:
    """What an `AGENT_FACTORY` function is given."""

    settings: Settings
    config: AgentConfig
    """The resolved configuration: AGENT_CONFIG, the environment, the defaults."""
    model_client: ModelClient | None
    """The provider's client (`.client`, `.api`, `.model(name)`); `None` for the fake model or
    when the provider's key is missing."""
    model: Model | None
    """The configured reply model; `None` when the provider's key is missing."""

    def model_named(self, name: str) -> Model | None:
        """Another model of the configured provider (the fake model stands in for every name)."""
        if self.settings.model_provider == "fake" or self.model_client is None:
            return self.model
        return self.model_client.model(name)

    def default_agent(self) -> Agent[AssistantContext]:
        """The agent the configuration describes, tools included."""
        client_settings = self.model_client.model_settings if self.model_client else None
        return build_agent(self.config, self.model, client_settings)


async def agent_from_factory(spec: str, setup: AgentSetup) -> Agent[AssistantContext]:
    """Import `package.module:function`, call it with `setup`, and check what it returns."""
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"AGENT_FACTORY: cannot import {module_name}: {exc}") from exc
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise ConfigurationError(f"AGENT_FACTORY: {module_name} has no function {function_name}")
    built: Any = factory(setup)
    if inspect.isawaitable(built):
        built = await built
    if not isinstance(built, Agent):
        raise ConfigurationError(
            f"AGENT_FACTORY: {spec} returned {type(built).__name__}, not an agents.Agent"
        )
    model = built.model
    if model is None:
        model = setup.model
    elif isinstance(model, str):
        model = setup.model_named(model)
    return built.clone(model=model)
