"""The default agent, built from settings; one `Assistant` runs a turn.

The model comes from `app.agent.model` (the provider's client and API); Agents SDK tracing is
off, so nothing leaves the machine but the model requests.
"""

from __future__ import annotations

from agents import (
    Agent,
    Model,
    ModelSettings,
    RunConfig,
    RunContextWrapper,
    Runner,
    StopAtTools,
    TResponseInputItem,
)
from agents.result import RunResultStreaming
from chatkit.errors import CustomStreamError

from app.agent.context import AssistantContext
from app.agent.errors import not_configured
from app.agent.fake_model import FakeModel
from app.agent.model import ModelClient
from app.agent.title import generate_title
from app.agent.tools import CLIENT_TOOLS, TOOLS
from app.config import ModelApi, Settings

MAX_TURNS = 10
"""Model calls per user message; a loop of tool calls beyond this ends with an error."""


def build_agent(
    settings: Settings, model: Model | None, model_settings: ModelSettings | None = None
) -> Agent[AssistantContext]:
    base_instructions = settings.chatkit_instructions

    def instructions(
        wrapper: RunContextWrapper[AssistantContext], _agent: Agent[AssistantContext]
    ) -> str:
        caller = wrapper.context.request_context
        extra = [f"The user's name is {caller.name}."] if caller.name else []
        if caller.locale:
            extra.append(f"The user's browser language is {caller.locale}: answer in it.")
        return "\n".join([base_instructions, *extra])

    return Agent[AssistantContext](
        name="Assistant",
        instructions=instructions,
        model=model,
        model_settings=model_settings or ModelSettings(),
        tools=list(TOOLS),
        tool_use_behavior=StopAtTools(stop_at_tool_names=list(CLIENT_TOOLS)),
    )


class Assistant:
    """Runs the agent for one turn and writes thread titles."""

    def __init__(
        self, settings: Settings, model: Model | None, model_client: ModelClient | None
    ) -> None:
        self.model = model
        self.api: ModelApi = model_client.api if model_client else "responses"
        """What the model input must fit: the fake model reads Responses API items."""
        self.not_configured = not_configured(settings.model_provider)
        model_settings = model_client.model_settings if model_client else None
        self.agent = build_agent(settings, model, model_settings)
        self.history_window = settings.history_window
        self.run_config = RunConfig(tracing_disabled=True, trace_include_sensitive_data=False)
        # Titles cost a model call; the fake model's would be noise, so it gets the fallback.
        self.title_model = None if isinstance(model, FakeModel) else model

    def run(
        self, agent_input: list[TResponseInputItem], context: AssistantContext
    ) -> RunResultStreaming:
        if self.model is None:
            raise CustomStreamError(self.not_configured, allow_retry=False)
        return Runner.run_streamed(
            self.agent,
            agent_input,
            context=context,
            max_turns=MAX_TURNS,
            run_config=self.run_config,
        )

    async def title(self, text: str) -> str:
        return await generate_title(self.title_model, text)
