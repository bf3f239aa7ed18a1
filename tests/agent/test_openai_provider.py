"""The production model path (AsyncOpenAI + OpenAIResponsesModel) against a local endpoint.

`FakeOpenAI` speaks the Responses API over HTTP on 127.0.0.1, so the client, its SSE parsing,
its error mapping and the Agents SDK's streaming run exactly as they do against OpenAI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from chatkit.types import AssistantMessageItem, UserMessageItem

from tests.conftest import make_settings
from tests.helpers.agent import assistant_texts, stored_items, stored_thread
from tests.helpers.apps import RunningApp, running_app
from tests.helpers.chatkit import (
    create_thread_req,
    created_thread_id,
    done_items,
    error_events,
    stream,
)
from tests.helpers.fake_openai import FakeOpenAI


@asynccontextmanager
async def openai_app(database_url: str, fake: FakeOpenAI) -> AsyncIterator[RunningApp]:
    settings = make_settings(
        database_url,
        model_provider="openai",
        openai_api_key="sk-test-key",
        openai_base_url=fake.base_url,
        chatkit_model="gpt-test",
        openai_max_retries=0,
    )
    async with running_app(settings) as running:
        yield running


async def test_a_turn_streams_from_an_openai_compatible_server(database_url, user):
    async with (
        FakeOpenAI(tokens=6, title="Greetings exchange") as fake,
        openai_app(database_url, fake) as running,
    ):
        events = await stream(running.client, user.user_id, create_thread_req("Hello model"))

    deltas = [
        e["update"]["delta"]
        for e in events
        if e["type"] == "thread.item.updated" and "delta" in e["update"]
    ]
    assert deltas == ["word0", " word1", " word2", " word3", " word4", " word5"]
    assert error_events(events) == []
    thread_id = created_thread_id(events)
    items = await stored_items(running.services, user.user_id, thread_id)
    assert [type(item) for item in items] == [UserMessageItem, AssistantMessageItem]
    assert assistant_texts(items) == ["word0 word1 word2 word3 word4 word5"]
    # The request the server got: our model, streaming, the instructions and the user's words.
    # The title is written while the answer streams: the two requests may arrive in any order.
    answer_request, title_request = sorted(fake.requests, key=lambda r: not r.get("stream"))
    assert (answer_request["model"], answer_request["stream"]) == ("gpt-test", True)
    assert "helpful assistant" in answer_request["instructions"]
    assert "Hello model" in str(answer_request["input"])
    assert {tool["name"] for tool in answer_request["tools"]} >= {"add_task", "switch_theme"}
    # The title is written by the model, in a second (non-streaming) call, and pushed.
    assert not title_request.get("stream")
    assert [e["thread"]["title"] for e in events if e["type"] == "thread.updated"] == [
        "Greetings exchange"
    ]
    assert (
        await stored_thread(running.services, user.user_id, thread_id)
    ).title == "Greetings exchange"


async def test_server_errors_and_rate_limits_become_error_events(database_url, user):
    expected = {
        "500": "The model provider had a server error (HTTP 500). Please try again.",
        "429": "The model provider is rate limiting requests (HTTP 429). "
        "Wait a moment, then try again.",
    }
    for failure, message in expected.items():
        async with (
            FakeOpenAI(failure=failure) as fake,  # type: ignore[arg-type]
            openai_app(database_url, fake) as running,
        ):
            events = await stream(running.client, user.user_id, create_thread_req("Hello"))

        assert [(e["message"], e["allow_retry"]) for e in error_events(events)] == [(message, True)]
        items = await stored_items(running.services, user.user_id, created_thread_id(events))
        assert [type(item) for item in items] == [UserMessageItem]


async def test_a_connection_dropped_mid_answer_is_an_interruption(database_url, user):
    async with (
        FakeOpenAI(tokens=10, failure="drop", drop_after=3, delay=0.005) as fake,
        openai_app(database_url, fake) as running,
    ):
        events = await stream(running.client, user.user_id, create_thread_req("Hello"))

    [error] = error_events(events)
    assert (
        error["message"]
        == "The model's answer was interrupted before it finished. Please try again."
    )
    assert error["allow_retry"] is True
    assert done_items(events, "assistant_message") == []
    items = await stored_items(running.services, user.user_id, created_thread_id(events))
    assert [type(item) for item in items] == [UserMessageItem]
