"""The model provider: one OpenAI client built from settings, and models over the API it speaks.

- `MODEL_PROVIDER=openai`: `AsyncOpenAI` on `OPENAI_BASE_URL` (OpenAI's when unset).
- `MODEL_PROVIDER=azure`: `AsyncAzureOpenAI` on `AZURE_OPENAI_ENDPOINT`, `api-version`
  `OPENAI_API_VERSION`, the key sent as `api-key`; `CHATKIT_MODEL` names the deployment.
- `MODEL_API=responses` speaks the Responses API (`OpenAIResponsesModel`); `chat_completions`
  speaks Chat Completions (`OpenAIChatCompletionsModel`), which most OpenAI-compatible servers
  implement, over the same client.

Clients take their values from `Settings` only (no SDK-global defaults). Replies, titles and
whatever else needs a model ask `ModelClient.model(name)`, so they all reach the same provider.

The models re-upload attachments whose provider file id went stale, then retry the request once
(`refreshing_stream`), so an expired or deleted copy never fails a turn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import openai
from agents import Model, ModelResponse, ModelSettings
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from agents.models.openai_responses import OpenAIResponsesModel
from openai import AsyncAzureOpenAI, AsyncOpenAI

from app.agent.attachments import TURN_ATTACHMENTS
from app.agent.fake_model import FakeModel
from app.config import ModelApi, Settings

KEYLESS = "unused"
"""The key sent to a custom `OPENAI_BASE_URL` when `OPENAI_API_KEY` is unset: local servers
(Ollama, vLLM without `--api-key`) ignore it, and the client needs one."""


@dataclass(frozen=True, slots=True)
class ModelClient:
    """The configured provider's client, the API it is spoken to with, and models by name."""

    client: AsyncOpenAI
    """`AsyncAzureOpenAI` for Azure (a subclass): also the way to the provider's Files API."""
    api: ModelApi

    def model(self, name: str) -> Model:
        """A model (an Azure deployment) by name, speaking this client's API."""
        if self.api == "chat_completions":
            return ChatCompletionsModel(model=name, openai_client=self.client)
        return ResponsesModel(model=name, openai_client=self.client)

    @property
    def model_settings(self) -> ModelSettings:
        """Settings for every agent on this client.

        A streamed Chat Completion reports its token usage only when asked to
        (`stream_options.include_usage`); the Responses API always does.
        """
        if self.api == "chat_completions":
            return ModelSettings(include_usage=True)
        return ModelSettings()

    async def aclose(self) -> None:
        await self.client.close()


class RefreshingFiles:
    """Retries a model request once with fresh file ids when the provider lost some; mixed in
    before the SDK's model class, whose methods `super()` reaches."""

    def stream_response(
        self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any
    ) -> Any:
        parent = super().stream_response  # type: ignore[misc]
        return refreshing_stream(
            lambda item: parent(system_instructions, item, *args, **kwargs), input
        )

    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        parent = super().get_response  # type: ignore[misc]
        return await refreshing_call(
            lambda item: parent(system_instructions, item, *args, **kwargs), input
        )


class ResponsesModel(RefreshingFiles, OpenAIResponsesModel):
    """The Responses API, retried once with fresh file ids when the provider lost some."""


class ChatCompletionsModel(RefreshingFiles, OpenAIChatCompletionsModel):
    """Chat Completions, retried once with fresh file ids when the provider lost some."""


async def refreshing_stream(
    call: Callable[[Any], AsyncIterator[Any]], model_input: Any
) -> AsyncIterator[Any]:
    """Stream `call(model_input)`; if the provider refuses it before the first event because a
    file id is stale, re-upload (`TurnAttachments.refresh`) and stream the retry instead."""
    turn = TURN_ATTACHMENTS.get()
    if turn is None or isinstance(model_input, str):
        async for event in call(model_input):
            yield event
        return
    model_input = turn.rewrite(model_input)
    started = False
    try:
        async for event in call(model_input):
            started = True
            yield event
        return
    except openai.APIStatusError as error:
        retry = None if started else await turn.refresh(model_input, error)
        if retry is None:
            raise
    async for event in call(retry):
        yield event


async def refreshing_call(call: Callable[[Any], Any], model_input: Any) -> ModelResponse:
    """`refreshing_stream` for a call that is not streamed."""
    turn = TURN_ATTACHMENTS.get()
    if turn is None or isinstance(model_input, str):
        response: ModelResponse = await call(model_input)
        return response
    model_input = turn.rewrite(model_input)
    try:
        response = await call(model_input)
    except openai.APIStatusError as error:
        retry = await turn.refresh(model_input, error)
        if retry is None:
            raise
        response = await call(retry)
    return response


def build_model_client(settings: Settings) -> ModelClient | None:
    """The provider's client; `None` for the fake model, or when the provider's key is missing
    (the server still starts, and each turn says which setting to fill in)."""
    retries, timeout = settings.openai_max_retries, settings.openai_timeout_seconds
    client: AsyncOpenAI
    match settings.model_provider:
        case "fake":
            return None
        case "azure":
            if settings.azure_openai_api_key is None:
                return None
            assert settings.azure_openai_endpoint and settings.openai_api_version  # validated
            client = AsyncAzureOpenAI(
                azure_endpoint=settings.azure_openai_endpoint,
                api_version=settings.openai_api_version,
                api_key=settings.azure_openai_api_key.get_secret_value(),
                max_retries=retries,
                timeout=timeout,
            )
        case "openai":
            key = settings.openai_api_key
            if key is None and settings.openai_base_url is None:
                return None
            client = AsyncOpenAI(
                api_key=key.get_secret_value() if key else KEYLESS,
                base_url=settings.openai_base_url,
                max_retries=retries,
                timeout=timeout,
            )
    return ModelClient(client=client, api=settings.model_api)


def build_model(
    settings: Settings, model_client: ModelClient | None, name: str | None = None
) -> Model | None:
    """The model for replies (`name`, else `CHATKIT_MODEL`), or `None` when the provider is not
    configured."""
    if settings.model_provider == "fake":
        return FakeModel(
            tokens=settings.fake_model_tokens, delay=settings.fake_model_delay_ms / 1000
        )
    return model_client.model(name or settings.chatkit_model) if model_client else None


def model_name(model: str | Model | None) -> str:
    """The name usage is recorded under: the provider's model (or Azure deployment) name."""
    if isinstance(model, str):
        return model
    if isinstance(model, FakeModel):
        return "fake"
    name = getattr(model, "model", None)
    if isinstance(name, str):
        return name
    return type(model).__name__ if model is not None else "unknown"
