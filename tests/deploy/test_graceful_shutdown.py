"""SIGTERM during an open stream: the process ends within its graceful-shutdown bound and the
thread stays consistent and usable.

The slow stream comes from the fake model's per-token delay (FAKE_MODEL_TOKENS,
FAKE_MODEL_DELAY_MS with MODEL_PROVIDER=fake).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from app.context import RequestContext
from app.store.db import create_engine
from app.store.store import SQLAlchemyStore
from tests import conftest
from tests.helpers.chatkit import add_message_req, create_thread_req, event_types, sse_events
from tests.helpers.platforms import ReleasedImage
from tests.helpers.server import ServerProcess

GRACE_SECONDS = 2
# Interpreter start-up is not in the bound, but lifespan shutdown and interpreter exit are.
EXIT_SLACK_SECONDS = 8
USER_ID = "shutdown-user"
PROMPT = "Tell me a very long story"


def data_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))


def is_reply_text(event: dict[str, Any]) -> bool:
    """Text of the reply (not just its empty first part): there is a partial reply to save."""
    return bool(
        event["type"] == "thread.item.updated"
        and event["update"]["type"] == "assistant_message.content_part.text_delta"
    )


@contextmanager
def streaming_reply(server: ServerProcess) -> Iterator[tuple[str, Iterator[str]]]:
    """A new turn, read until its reply is streaming: the thread's id and the lines to come."""
    thread_id = ""
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST",
            f"{server.base_url}/chatkit",
            json=create_thread_req(PROMPT),
            headers={"X-User-Id": USER_ID},
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        for event in data_events(lines):
            if event["type"] == "thread.created":
                thread_id = event["thread"]["id"]
            if is_reply_text(event):
                break  # the assistant's reply is streaming now
        assert thread_id, "no thread.created event"
        yield thread_id, lines


def interrupt_mid_reply(server: ServerProcess) -> tuple[str, float]:
    """Start a turn, send SIGTERM once the reply is streaming, read until the server ends it.

    Returns the thread id and the seconds from SIGTERM to the process's exit.
    """
    with streaming_reply(server) as (thread_id, lines):
        server.signal(signal.SIGTERM)
        sent = time.monotonic()
        try:
            for _ in lines:
                pass
        except httpx.HTTPError:
            pass  # the server cut the stream when the grace period ran out
    server.wait(timeout=GRACE_SECONDS + 2 * EXIT_SLACK_SECONDS)
    return thread_id, time.monotonic() - sent


def assert_interrupted_turn_saved(items: list[Any]) -> None:
    """The user's message once, the partial reply the SDK saves on cancellation, and its note
    that the reply was cut (so the next turn does not try to continue it)."""
    assert len({item.id for item in items}) == len(items)
    assert [item.type for item in items] == [
        "user_message",
        "assistant_message",
        "sdk_hidden_context",
    ]
    assert [part.text for part in items[0].content] == [PROMPT]
    assert items[1].content[0].text.strip()


async def stored_items(url: str, thread_id: str) -> list[Any]:
    engine = create_engine(conftest.make_settings(url))
    try:
        store = SQLAlchemyStore(engine)
        context = RequestContext(user_id=USER_ID, auth_method="development")
        await store.load_thread(thread_id, context)
        page = await store.load_thread_items(thread_id, None, 100, "asc", context)
        return list(page.data)
    finally:
        await engine.dispose()


def test_sigterm_mid_stream_exits_within_the_bound_and_keeps_the_thread_usable(
    released_image: ReleasedImage,
) -> None:
    url = released_image.database_url
    grace = {"GRACEFUL_SHUTDOWN_SECONDS": str(GRACE_SECONDS)}
    slow = {"FAKE_MODEL_TOKENS": "100000", "FAKE_MODEL_DELAY_MS": "20"}  # longer than the grace
    with released_image.serve(**grace, **slow) as server:
        thread_id, elapsed = interrupt_mid_reply(server)
    assert elapsed < GRACE_SECONDS + EXIT_SLACK_SECONDS, server.log()
    assert server.process.returncode == -signal.SIGTERM, server.log()  # not SIGKILLed
    assert "timeout graceful shutdown exceeded" in server.log()

    items = asyncio.run(stored_items(url, thread_id))
    assert_interrupted_turn_saved(items)

    # The interrupted thread takes the next turn on a fresh server.
    fast = {"FAKE_MODEL_TOKENS": "3", "FAKE_MODEL_DELAY_MS": "0"}
    with released_image.serve(**grace, **fast) as server:
        response = httpx.post(
            f"{server.base_url}/chatkit",
            json=add_message_req(thread_id, "Go on"),
            headers={"X-User-Id": USER_ID},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert "thread.item.done" in event_types(sse_events(response))
    assert len(asyncio.run(stored_items(url, thread_id))) > len(items)


def test_slow_reply_through_the_real_server_carries_keepalive_comments(
    released_image: ReleasedImage,
) -> None:
    with released_image.serve(
        SSE_KEEPALIVE_SECONDS="0.05",
        FAKE_MODEL_TOKENS="4",
        FAKE_MODEL_DELAY_MS="500",  # ten keep-alive intervals between tokens
    ) as server:
        response = httpx.post(
            f"{server.base_url}/chatkit",
            json=create_thread_req("Hello"),
            headers={"X-User-Id": USER_ID},
            timeout=60,
        )
    assert response.status_code == 200, response.text
    assert ": keep-alive\n\n" in response.text
    assert "thread.item.done" in event_types(sse_events(response))


def test_client_disconnect_mid_stream_saves_the_partial_reply(
    released_image: ReleasedImage,
) -> None:
    url = released_image.database_url
    slow = {"FAKE_MODEL_TOKENS": "100000", "FAKE_MODEL_DELAY_MS": "20"}
    with released_image.serve(ON_DISCONNECT="cancel", **slow) as server:
        with streaming_reply(server) as (thread_id, _):
            pass  # leave mid-reply
        # The connection is closed; the server notices and cancels the turn (ON_DISCONNECT).
        deadline = time.monotonic() + 30
        while len(items := asyncio.run(stored_items(url, thread_id))) < 3:
            assert time.monotonic() < deadline, (items, server.log())
            time.sleep(0.1)
    assert_interrupted_turn_saved(items)
