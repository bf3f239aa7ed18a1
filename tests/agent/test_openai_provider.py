"""The production model path (the OpenAI client and the Agents SDK's models) on both APIs.

`FakeOpenAI` speaks the Responses API and Chat Completions over HTTP on 127.0.0.1, so the
client, its SSE parsing, its error mapping and the SDK's streaming run exactly as they do
against a real provider. Each test runs `MODEL_API=responses` and `MODEL_API=chat_completions`;
the latter is configured as a new user would for a local server: `OPENAI_BASE_URL` and
`MODEL_API`, no key.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from agents import RunResultStreaming
from chatkit.types import (
    AssistantMessageItem,
    ClientToolCallItem,
    UserMessageItem,
    WidgetItem,
)

from app.agent.errors import NO_RESPONSES_API, UNKNOWN_MODEL
from app.agent.model import KEYLESS
from app.config import ModelApi
from app.services import Services
from tests.conftest import make_settings
from tests.helpers.agent import MODEL_TITLES, assistant_texts, stored_items, stored_thread
from tests.helpers.apps import RunningApp, running_app
from tests.helpers.chatkit import (
    add_message_req,
    client_tool_output_req,
    create_thread_req,
    created_thread_id,
    done_items,
    error_events,
    retry_req,
    stream,
)
from tests.helpers.fake_openai import INPUT_TOKENS, FakeOpenAI, FakeReply, last_tool_output

ROUTES = {"responses": "/v1/responses", "chat_completions": "/v1/chat/completions"}


@asynccontextmanager
async def provider_app(
    database_url: str, fake: FakeOpenAI, api: ModelApi, **settings: Any
) -> AsyncIterator[RunningApp]:
    """The app on `fake`: with a key on the Responses API, keyless on Chat Completions."""
    key = {"openai_api_key": "sk-test-key"} if api == "responses" else {}
    values = {"chatkit_model": "gpt-test", "openai_max_retries": 0, **key, **settings}
    async with running_app(
        make_settings(
            database_url,
            model_provider="openai",
            model_api=api,
            openai_base_url=fake.base_url,
            **values,
        )
    ) as running:
        yield running


def record_runs(services: Services, monkeypatch: pytest.MonkeyPatch) -> list[RunResultStreaming]:
    """The result of every run the assistant starts, to read its usage afterwards."""
    assistant = services.assistant
    start = assistant.run
    results: list[RunResultStreaming] = []

    def run(*args: Any, **kwargs: Any) -> RunResultStreaming:
        results.append(start(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(assistant, "run", run)
    return results


def text_deltas(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["update"]["delta"]
        for e in events
        if e["type"] == "thread.item.updated" and "delta" in e["update"]
    ]


async def test_a_turn_streams_its_answer_title_and_usage(
    database_url, user, model_api, monkeypatch
):
    async with (
        FakeOpenAI(tokens=6, title="Greetings exchange") as fake,
        provider_app(database_url, fake, model_api, agent_config=MODEL_TITLES) as running,
    ):
        client = running.client
        runs = record_runs(running.services, monkeypatch)
        events = await stream(client, user.user_id, create_thread_req("Hello model"))

    assert text_deltas(events) == ["word0", " word1", " word2", " word3", " word4", " word5"]
    assert error_events(events) == []
    thread_id = created_thread_id(events)
    items = await stored_items(running.services, user.user_id, thread_id)
    assert [type(item) for item in items] == [UserMessageItem, AssistantMessageItem]
    assert assistant_texts(items) == ["word0 word1 word2 word3 word4 word5"]
    # The request: our model, streamed to the API's route, with instructions, words and tools.
    [answer] = fake.streamed()
    assert answer.path == ROUTES[model_api]
    assert (answer.body["model"], answer.body["stream"]) == ("gpt-test", True)
    expected_key = "sk-test-key" if model_api == "responses" else KEYLESS
    assert answer.headers["authorization"] == f"Bearer {expected_key}"
    request_text = json.dumps(answer.body)
    assert "helpful assistant" in request_text and "Hello model" in request_text
    assert {tool_name(tool) for tool in answer.body["tools"]} >= {"add_task", "switch_theme"}
    if model_api == "chat_completions":
        assert answer.body["stream_options"] == {"include_usage": True}
    # The title: a second, non-streaming request to the same API, pushed and saved.
    [title] = [request for request in fake.received if not request.body.get("stream")]
    assert title.path == ROUTES[model_api]
    assert [e["thread"]["title"] for e in events if e["type"] == "thread.updated"] == [
        "Greetings exchange"
    ]
    assert (
        await stored_thread(running.services, user.user_id, thread_id)
    ).title == "Greetings exchange"
    # Usage, as the provider reported it, is on the run (usage rows and quotas read it).
    [run] = runs
    usage = run.context_wrapper.usage
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (1, INPUT_TOKENS, 6)
    assert usage.total_tokens == INPUT_TOKENS + 6


async def test_the_next_message_carries_the_answer_before(database_url, user, model_api):
    async with (
        FakeOpenAI(tokens=3) as fake,
        provider_app(database_url, fake, model_api) as running,
    ):
        client = running.client
        events = await stream(client, user.user_id, create_thread_req("Hello"))
        thread_id = created_thread_id(events)
        later = await stream(client, user.user_id, add_message_req(thread_id, "And again"))

    assert error_events(later) == []
    items = await stored_items(running.services, user.user_id, thread_id)
    assert assistant_texts(items) == ["word0 word1 word2"] * 2
    # The first answer went back to the model as the assistant's, in the API's own shape.
    _, second = fake.streamed()
    history = second.body["messages"] if model_api == "chat_completions" else second.body["input"]
    [answer] = [entry for entry in history if entry["role"] == "assistant"]
    assert "word0 word1 word2" in json.dumps(answer["content"])
    assert history[-1]["role"] == "user" and "And again" in json.dumps(history[-1]["content"])


def tool_name(tool: dict[str, Any]) -> str:
    """A tool's name in either API's request (Chat Completions nests it under `function`)."""
    name: str = tool.get("name") or tool["function"]["name"]
    return name


async def test_a_server_tool_runs_between_two_model_calls(
    database_url, user, model_api, monkeypatch
):
    async with (
        FakeOpenAI() as fake,
        provider_app(database_url, fake, model_api) as running,
    ):
        client = running.client
        fake.script.extend(
            [FakeReply.call("add_task", text="Adding it.", title="Buy milk"), FakeReply("Added.")]
        )
        runs = record_runs(running.services, monkeypatch)
        events = await stream(client, user.user_id, create_thread_req("Remind me to buy milk"))

    assert error_events(events) == []
    [task] = await running.services.tasks.list(user.user_id)
    assert task.title == "Buy milk"
    # Both assistant messages are kept, each with an id of its own, around the tool's widget.
    items = await stored_items(running.services, user.user_id, created_thread_id(events))
    assert [type(item) for item in items] == [
        UserMessageItem,
        AssistantMessageItem,
        WidgetItem,
        AssistantMessageItem,
    ]
    assert assistant_texts(items) == ["Adding it.", "Added."]
    # The second call carried the tool call and its output, in the API's own shape.
    first, second = fake.streamed()
    assert "Buy milk" in last_tool_output(second.body)
    usage = runs[0].context_wrapper.usage
    assert (usage.requests, usage.input_tokens) == (2, 2 * INPUT_TOKENS)
    assert usage.output_tokens == 2 + 1 + 1  # "Adding it." and its call, then "Added."


async def test_a_client_tool_round_trip(database_url, user, model_api):
    async with (
        FakeOpenAI() as fake,
        provider_app(database_url, fake, model_api) as running,
    ):
        client = running.client
        fake.script.append(FakeReply.call("switch_theme", theme="dark"))
        events = await stream(client, user.user_id, create_thread_req("Dark mode please"))

        # The run stops at the client tool: a pending call for the browser, no answer.
        calls = done_items(events, "client_tool_call")
        pending = [("switch_theme", {"theme": "dark"}, "pending")]
        assert [(c["name"], c["arguments"], c["status"]) for c in calls] == pending
        assert done_items(events, "assistant_message") == []
        thread_id = created_thread_id(events)

        fake.script.append(FakeReply("Switched to dark."))
        resumed = await stream(
            client, user.user_id, client_tool_output_req(thread_id, {"success": True})
        )

    assert error_events(resumed) == []
    assert [a["content"][0]["text"] for a in done_items(resumed, "assistant_message")] == [
        "Switched to dark."
    ]
    _, second = fake.streamed()
    assert json.loads(last_tool_output(second.body)) == {"success": True}
    items = await stored_items(running.services, user.user_id, thread_id)
    [stored_call] = [item for item in items if isinstance(item, ClientToolCallItem)]
    assert (stored_call.status, stored_call.output) == ("completed", {"success": True})
    assert assistant_texts(items) == ["Switched to dark."]


FAULTS = {
    "500": "The model provider had a server error (HTTP 500). Please try again.",
    "429": "The model provider is rate limiting requests (HTTP 429). "
    "Wait a moment, then try again.",
    "drop": "The model's answer was interrupted before it finished. Please try again.",
}


@pytest.mark.parametrize("failure", FAULTS)
async def test_a_fault_is_a_readable_error_and_retry_recovers(
    database_url, user, model_api, failure
):
    async with (
        FakeOpenAI(tokens=10, failure=failure, drop_after=3, delay=0.005) as fake,  # type: ignore[arg-type]
        provider_app(database_url, fake, model_api) as running,
    ):
        client = running.client
        events = await stream(client, user.user_id, create_thread_req("Hello"))

        assert [(e["message"], e["allow_retry"]) for e in error_events(events)] == [
            (FAULTS[failure], True)
        ]
        assert done_items(events, "assistant_message") == []
        thread_id = created_thread_id(events)
        items = await stored_items(running.services, user.user_id, thread_id)
        assert [type(item) for item in items] == [UserMessageItem]

        fake.failure = None
        [question] = done_items(events, "user_message")
        retried = await stream(client, user.user_id, retry_req(thread_id, question["id"]))

    assert error_events(retried) == []
    items = await stored_items(running.services, user.user_id, thread_id)
    assert [type(item) for item in items] == [UserMessageItem, AssistantMessageItem]


async def test_a_server_without_the_responses_api_is_named_as_such(database_url, user):
    async with (
        FakeOpenAI(apis=("chat_completions",)) as fake,
        provider_app(database_url, fake, "responses") as running,
    ):
        client = running.client
        events = await stream(client, user.user_id, create_thread_req("Hello"))

    [error] = error_events(events)
    assert error["message"] == NO_RESPONSES_API
    assert "MODEL_API=chat_completions" in error["message"]
    assert "CHATKIT_MODEL" not in error["message"]
    assert error["allow_retry"] is False
    assert fake.received == []  # both requests (answer and title) met the bare 404


async def test_an_unknown_model_is_named_as_such(database_url, user, model_api):
    async with (
        FakeOpenAI(models=frozenset({"gpt-real"})) as fake,
        provider_app(database_url, fake, model_api, chatkit_model="gpt-typo") as running,
    ):
        client = running.client
        events = await stream(client, user.user_id, create_thread_req("Hello"))

    assert [(e["message"], e["allow_retry"]) for e in error_events(events)] == [
        (UNKNOWN_MODEL, False)
    ]
    assert "CHATKIT_MODEL" in UNKNOWN_MODEL
