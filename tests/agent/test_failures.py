"""Model failures end the turn with a readable error event and leave a consistent thread.

Policy: an answer that fails mid-stream is not saved (its deltas were shown, the error event tells
the client to discard them); finished items, such as a tool's widget, are. `retry_after_item`
then removes whatever followed the user's message and answers afresh.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import openai
import pytest
from chatkit.types import AssistantMessageItem, UserMessageItem, WidgetItem
from pydantic import ValidationError

from app.agent.agent import MAX_TURNS
from app.agent.errors import INTERRUPTED
from app.agent.fake_model import FakeTurn
from app.config import Settings
from tests.conftest import make_settings
from tests.helpers.agent import assistant_texts, stored_items, stored_thread
from tests.helpers.apps import RunningApp, running_app
from tests.helpers.chatkit import (
    create_thread_req,
    created_thread_id,
    done_items,
    error_events,
    event_types,
    headers_for,
    retry_req,
    stream,
)


def provider_error(cls: type[openai.APIStatusError], status: int) -> openai.APIStatusError:
    request = httpx2.Request("POST", "https://api.openai.com/v1/responses")
    return cls("provider says no", response=httpx2.Response(status, request=request), body=None)


FAILURES = {
    "exception": (RuntimeError("boom"), "The assistant failed to answer. Please try again."),
    "429": (
        provider_error(openai.RateLimitError, 429),
        "The model provider is rate limiting requests (HTTP 429). Wait a moment, then try again.",
    ),
    "500": (
        provider_error(openai.InternalServerError, 500),
        "The model provider had a server error (HTTP 500). Please try again.",
    ),
    "503": (
        provider_error(openai.APIStatusError, 503),
        "The model provider had a server error (HTTP 503). Please try again.",
    ),
}


@pytest.mark.parametrize("failure", FAILURES)
async def test_model_failure_is_a_readable_retryable_error(
    client, services, fake_model, user, failure
):
    error, message = FAILURES[failure]
    fake_model.script.push(FakeTurn.fail(error))

    events = await stream(client, user.user_id, create_thread_req("Hello"))

    assert error_events(events) == [
        {"type": "error", "code": "custom", "message": message, "allow_retry": True}
    ]
    assert event_types(events)[-1] == "error"
    thread_id = created_thread_id(events)
    items = await stored_items(services, user.user_id, thread_id)
    assert [type(item) for item in items] == [UserMessageItem]
    # A failed first exchange does not title the thread.
    assert (await stored_thread(services, user.user_id, thread_id)).title is None


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[RunningApp]:
    """The app on a socket, so that a client reads the stream as it arrives."""
    async with running_app(settings, socket=True) as running:
        yield running


def text_deltas(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["update"]["delta"]
        for e in events
        if e["type"] == "thread.item.updated" and e["update"]["type"].endswith("text_delta")
    ]


async def stream_then_release(
    client: httpx.AsyncClient, user_id: str, payload: Any, deltas: int, hold: asyncio.Event
) -> list[dict[str, Any]]:
    """Stream a turn whose model holds its failure; release it once `deltas` text deltas have
    arrived, then read to the end. (Deltas the run produced but the client had not read when the
    run failed would be dropped with the failed answer: the hold makes the test deterministic.)"""
    events: list[dict[str, Any]] = []
    body = json.dumps(payload)
    headers = {**headers_for(user_id), "Content-Type": "application/json"}
    async with (
        asyncio.timeout(30),
        client.stream("POST", "/chatkit", content=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
                if len(text_deltas(events)) == deltas:
                    hold.set()
    return events


async def test_failure_mid_answer_saves_nothing_partial_and_retry_recovers(served, user):
    hold = asyncio.Event()
    served.fake_model.script.push(
        FakeTurn.fail(provider_error(openai.InternalServerError, 502), after_tokens=3, hold=hold),
        FakeTurn.say("A complete answer."),
    )
    client, services = served.client, served.services

    events = await stream_then_release(client, user.user_id, create_thread_req("Hello"), 3, hold)

    assert text_deltas(events) == ["partial "] * 3
    assert [e["message"] for e in error_events(events)] == [
        "The model provider had a server error (HTTP 502). Please try again."
    ]
    thread_id = created_thread_id(events)
    [question] = done_items(events, "user_message")
    assert [type(i) for i in await stored_items(services, user.user_id, thread_id)] == [
        UserMessageItem
    ]

    retried = await stream(client, user.user_id, retry_req(thread_id, question["id"]))

    assert error_events(retried) == []
    items = await stored_items(services, user.user_id, thread_id)
    assert [type(item) for item in items] == [UserMessageItem, AssistantMessageItem]
    assert assistant_texts(items) == ["A complete answer."]
    assert (await stored_thread(services, user.user_id, thread_id)).title == "Hello"


async def test_a_failed_turn_leaves_no_pending_tasks(client, fake_model, user, caplog):
    # stream_agent_response pulls from the run and the tool queue in tasks of its own; a failed
    # run must not abandon them (asyncio logs those when they are garbage-collected).
    fake_model.script.push(FakeTurn.call("list_tasks"), FakeTurn.fail(RuntimeError("boom")))

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        events = await stream(client, user.user_id, create_thread_req("Hello"))
        await asyncio.sleep(0)
        gc.collect()

    assert len(error_events(events)) == 1
    assert len(done_items(events, "widget")) == 1
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


async def test_dropped_stream_is_an_interruption(served, user):
    hold = asyncio.Event()
    # The stream just ends, without response.completed, as when a connection drops.
    served.fake_model.script.push(FakeTurn.say("one two three four five", drop_after=2, hold=hold))

    events = await stream_then_release(
        served.client, user.user_id, create_thread_req("Hello"), 2, hold
    )

    assert error_events(events) == [
        {"type": "error", "code": "custom", "message": INTERRUPTED, "allow_retry": True}
    ]
    assert text_deltas(events) == ["one ", "two "]
    items = await stored_items(served.services, user.user_id, created_thread_id(events))
    assert [type(item) for item in items] == [UserMessageItem]


async def test_failure_after_a_tool_keeps_its_widget_until_retry(
    client, services, fake_model, user
):
    fake_model.script.push(
        FakeTurn.call("add_task", title="Pay rent"),
        FakeTurn.fail(provider_error(openai.RateLimitError, 429)),
        FakeTurn.say("Nothing to add this time."),
    )

    events = await stream(client, user.user_id, create_thread_req("Add pay rent"))

    thread_id = created_thread_id(events)
    assert len(error_events(events)) == 1
    items = await stored_items(services, user.user_id, thread_id)
    assert [type(item) for item in items] == [UserMessageItem, WidgetItem]

    [question] = done_items(events, "user_message")
    await stream(client, user.user_id, retry_req(thread_id, question["id"]))
    items = await stored_items(services, user.user_id, thread_id)
    assert [type(item) for item in items] == [UserMessageItem, AssistantMessageItem]


@pytest.fixture
async def unconfigured(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningApp]:
    """MODEL_PROVIDER=openai and a blank OPENAI_API_KEY (as in .env.example): it still starts."""
    monkeypatch.setenv("OPENAI_API_KEY", "")
    async with running_app(make_settings(database_url, model_provider="openai")) as running:
        yield running


async def test_missing_api_key_is_an_error_event_naming_the_setting(unconfigured, user):
    client = unconfigured.client

    health = await client.get("/healthz")
    events = await stream(client, user.user_id, create_thread_req("Hello"))

    assert health.status_code == 200
    [error] = error_events(events)
    assert "OPENAI_API_KEY" in error["message"]
    assert error["allow_retry"] is False
    items = await stored_items(unconfigured.services, user.user_id, created_thread_id(events))
    assert [type(item) for item in items] == [UserMessageItem]


def test_fake_model_is_refused_in_production():
    with pytest.raises(ValidationError, match="MODEL_PROVIDER=fake"):
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            environment="production",
            model_provider="fake",
            auth_jwt_secret="s" * 40,
            cors_allow_origins="https://app.example.com",
        )


async def test_a_tool_loop_is_stopped_with_a_readable_error(client, services, fake_model, user):
    fake_model.script.push(*[FakeTurn.call("get_current_user") for _ in range(MAX_TURNS + 1)])

    events = await stream(client, user.user_id, create_thread_req("loop"))

    [error] = error_events(events)
    assert "too many steps" in error["message"]
    assert len(fake_model.script.calls) == MAX_TURNS
    items = await stored_items(services, user.user_id, created_thread_id(events))
    assert [type(item) for item in items] == [UserMessageItem]
