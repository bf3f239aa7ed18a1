"""The default agent and its model, built from settings; one `Assistant` runs a turn.

`MODEL_PROVIDER=openai` talks to the Responses API through a client built from `OPENAI_API_KEY`
and `OPENAI_BASE_URL` (no SDK-global defaults, no tracing export); `fake` plays `FakeModel`.
"""

from __future__ import annotations

from agents import (
    Agent,
    Model,
    RunConfig,
    RunContextWrapper,
    Runner,
    StopAtTools,
    TResponseInputItem,
)
from agents.models.openai_responses import OpenAIResponsesModel
from agents.result import RunResultStreaming
from chatkit.errors import CustomStreamError
from openai import AsyncOpenAI

from app.agent.context import AssistantContext
from app.agent.errors import NOT_CONFIGURED
from app.agent.fake_model import FakeModel
from app.agent.title import generate_title
from app.agent.tools import CLIENT_TOOLS, TOOLS
from app.config import Settings

MAX_TURNS = 10
"""Model calls per user message; a loop of tool calls beyond this ends with an error."""


def build_model(settings: Settings) -> Model | None:
    """The configured model, or `None` when the OpenAI provider has no key (turns then fail)."""
    if settings.model_provider == "fake":
        return FakeModel(
            tokens=settings.fake_model_tokens, delay=settings.fake_model_delay_ms / 1000
        )
    if settings.openai_api_key is None:
        return None
    client = AsyncOpenAI(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        max_retries=settings.openai_max_retries,
        timeout=settings.openai_timeout_seconds,
    )
    return OpenAIResponsesModel(model=settings.chatkit_model, openai_client=client)


def build_agent(settings: Settings, model: Model | None) -> Agent[AssistantContext]:
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
        tools=list(TOOLS),
        tool_use_behavior=StopAtTools(stop_at_tool_names=list(CLIENT_TOOLS)),
    )


class Assistant:
    """Runs the agent for one turn and writes thread titles."""

    def __init__(self, settings: Settings, model: Model | None) -> None:
        self.model = model
        self.agent = build_agent(settings, model)
        self.history_window = settings.history_window
        self.run_config = RunConfig(tracing_disabled=True, trace_include_sensitive_data=False)
        # Titles cost a model call; the fake model's would be noise, so it gets the fallback.
        self.title_model = None if isinstance(model, FakeModel) else model

    def run(
        self, agent_input: list[TResponseInputItem], context: AssistantContext
    ) -> RunResultStreaming:
        if self.model is None:
            raise CustomStreamError(NOT_CONFIGURED, allow_retry=False)
        return Runner.run_streamed(
            self.agent,
            agent_input,
            context=context,
            max_turns=MAX_TURNS,
            run_config=self.run_config,
        )

    async def title(self, text: str) -> str:
        return await generate_title(self.title_model, text)
