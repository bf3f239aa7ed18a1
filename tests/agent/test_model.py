"""The model factory (`app.agent.model`), the provider errors it leads to, and item ids.

Provider errors are made by the real OpenAI client from real HTTP answers (an in-memory
transport stands in for the network), so their codes and messages are parsed as in production.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx2
import openai
import pytest
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from agents.models.openai_responses import OpenAIResponsesModel
from chatkit.types import (
    AssistantMessageItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadStreamEvent,
    WidgetItem,
)
from chatkit.widgets import Card

from app.agent.errors import (
    NO_CHAT_COMPLETIONS_API,
    NO_RESPONSES_API,
    UNKNOWN_MODEL,
    stream_error_for,
)
from app.agent.fake_model import FakeModel
from app.agent.model import KEYLESS, build_model, build_model_client
from app.agent.streaming import ItemIds
from app.config import Settings

AZURE = {
    "model_provider": "azure",
    "azure_openai_endpoint": "https://res.openai.azure.com/",
    "openai_api_version": "2025-04-01-preview",
}


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_openai_on_the_responses_api_by_default() -> None:
    client = build_model_client(settings(openai_api_key="sk-1"))

    assert client is not None and client.api == "responses"
    assert type(client.client) is openai.AsyncOpenAI
    assert str(client.client.base_url) == "https://api.openai.com/v1/"
    assert client.client.api_key == "sk-1"
    assert isinstance(client.model("gpt-x"), OpenAIResponsesModel)
    assert client.model_settings.include_usage is None


def test_chat_completions_on_a_keyless_local_server() -> None:
    """The two settings a new user gives for Ollama or vLLM are enough."""
    config = settings(openai_base_url="http://localhost:11434/v1", model_api="chat_completions")
    client = build_model_client(config)

    assert client is not None and client.client.api_key == KEYLESS
    model = build_model(config, client)
    assert isinstance(model, OpenAIChatCompletionsModel)
    assert model.model == "gpt-4.1-mini"
    # Without it, a streamed Chat Completion reports no usage (the SDK asks only OpenAI's).
    assert client.model_settings.include_usage is True


def test_azure_builds_the_azure_client() -> None:
    client = build_model_client(settings(**AZURE, azure_openai_api_key="az-key"))

    assert client is not None and isinstance(client.client, openai.AsyncAzureOpenAI)
    assert str(client.client.base_url) == "https://res.openai.azure.com/openai/"
    assert client.client.default_query == {"api-version": "2025-04-01-preview"}


@pytest.mark.parametrize(
    ("environ", "values"),
    [
        # As copied from .env.example, with the provider chosen (unset, development's demo
        # would answer with the fake model: tests/demo).
        ({"OPENAI_API_KEY": ""}, {"model_provider": "openai"}),
        ({}, {**AZURE, "openai_api_key": "sk-for-openai-not-azure"}),
    ],
)
def test_no_client_without_the_providers_key(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], values: dict[str, Any]
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    config = settings(**values)
    assert build_model_client(config) is None
    assert build_model(config, None) is None


def test_the_fake_provider_needs_no_client() -> None:
    config = settings(model_provider="fake")
    assert build_model_client(config) is None
    assert isinstance(build_model(config, None), FakeModel)


async def provider_error(
    status: int, body: object, path: str = "/v1/responses", *, azure: bool = False
) -> openai.APIStatusError:
    """The error the OpenAI (or Azure) client raises when its request is answered so."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        if isinstance(body, str):
            return httpx2.Response(status, text=body, request=request)
        return httpx2.Response(status, json=body, request=request)

    http_client = httpx2.AsyncClient(transport=httpx2.MockTransport(answer))
    client: openai.AsyncOpenAI
    if azure:
        client = openai.AsyncAzureOpenAI(
            azure_endpoint="https://res.openai.azure.com",
            api_version="2025-04-01-preview",
            api_key="az",
            http_client=http_client,
            max_retries=0,
        )
    else:
        client = openai.AsyncOpenAI(
            api_key="k", base_url="http://x/v1", http_client=http_client, max_retries=0
        )
    with pytest.raises(openai.APIStatusError) as caught:
        if path.endswith("/chat/completions"):
            await client.chat.completions.create(model="m", messages=[])
        else:
            await client.responses.create(model="m", input="hi")
    assert caught.value.request.url.path == path
    return caught.value


@pytest.mark.parametrize(
    ("body", "path", "expected"),
    [
        # OpenAI, on either API
        (
            {"error": {"message": "The model `m` does not exist", "code": "model_not_found"}},
            "/v1/responses",
            UNKNOWN_MODEL,
        ),
        (
            {"error": {"message": "The model `m` does not exist", "code": "model_not_found"}},
            "/v1/chat/completions",
            UNKNOWN_MODEL,
        ),
        # Ollama and vLLM name the model they do not have
        ({"error": {"message": 'model "m" not found, try pulling it first'}}, None, UNKNOWN_MODEL),
        ({"object": "error", "message": "The model `m` does not exist.", "code": 404}, None, None),
        # Servers without the route: Ollama, a FastAPI server (vLLM), a gateway's HTML page
        ("404 page not found", "/v1/responses", NO_RESPONSES_API),
        ({"detail": "Not Found"}, "/v1/responses", NO_RESPONSES_API),
        ("<html><body>Not Found</body></html>", "/v1/chat/completions", NO_CHAT_COMPLETIONS_API),
    ],
)
async def test_a_404_names_the_model_only_when_the_server_does(
    body: object, path: str | None, expected: str | None
) -> None:
    error = stream_error_for(await provider_error(404, body, path or "/v1/chat/completions"))

    assert error.message == (expected or UNKNOWN_MODEL)
    assert error.allow_retry is False


async def test_an_unknown_azure_deployment_names_the_model_setting() -> None:
    body = {
        "error": {
            "code": "DeploymentNotFound",
            "message": "The API deployment for this resource does not exist.",
        }
    }
    error = await provider_error(404, body, "/openai/deployments/m/chat/completions", azure=True)

    assert stream_error_for(error).message == UNKNOWN_MODEL


@pytest.mark.parametrize(
    ("azure", "setting"), [(False, "OPENAI_API_KEY"), (True, "AZURE_OPENAI_API_KEY")]
)
async def test_a_rejected_key_names_the_providers_setting(azure: bool, setting: str) -> None:
    path = "/openai/responses" if azure else "/v1/responses"
    body = {"error": {"message": "Access denied due to invalid subscription key."}}

    error = stream_error_for(await provider_error(401, body, path, azure=azure))

    assert error.message == f"The model provider rejected the API key: check {setting}."


def test_items_named_alike_by_the_provider_get_ids_and_places_of_their_own() -> None:
    """The SDK's Chat Completions model names every item `__fake_id__`; the SDK stamps a done
    item with the time it reads it, possibly after the widget of the tool called next."""
    issued = iter(f"msg_{n}" for n in range(10))
    ids = ItemIds(lambda _kind: next(issued))
    start = datetime(2026, 1, 1, 12)

    def message(at: int, text: str = "") -> AssistantMessageItem:
        return AssistantMessageItem.model_validate(
            {
                "id": "__fake_id__",
                "thread_id": "thr_1",
                "created_at": start + timedelta(seconds=at),
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )

    widget = WidgetItem(
        id="cwd_1",
        thread_id="thr_1",
        created_at=start + timedelta(seconds=2),
        widget=Card(children=[]),
    )
    stream: list[ThreadStreamEvent] = [
        ThreadItemAddedEvent(item=message(0)),
        ThreadItemDoneEvent(item=message(3, "Adding it.")),  # read after the widget was made
        ThreadItemDoneEvent(item=widget),
        ThreadItemAddedEvent(item=message(4)),
        ThreadItemDoneEvent(item=message(5, "Added.")),
    ]

    rewritten = [ids.rewrite(event) for event in stream]

    stored = [event.item for event in rewritten if isinstance(event, ThreadItemDoneEvent)]
    assert [item.id for item in stored] == ["msg_0", "cwd_1", "msg_1"]
    assert sorted(stored, key=lambda item: item.created_at) == stored
