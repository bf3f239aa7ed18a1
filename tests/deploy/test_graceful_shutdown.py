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
from pathlib import Path
from typing import Any

import httpx

from app.context import RequestContext
from app.store.db import create_engine
from app.store.store import SQLAlchemyStore
from tests import conftest
from tests.helpers.chatkit import add_message_req, create_thread_req, event_types, sse_events
from tests.helpers.database import fresh_postgres_database
from tests.helpers.dockerfile import read_runtime_image
from tests.helpers.platforms import platform_environment, run_release_step
from tests.helpers.server import ServerProcess, free_port, running_server

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


def interrupt_mid_reply(server: ServerProcess) -> tuple[str, float]:
    """Start a turn, send SIGTERM once the reply is streaming, read until the server ends it.

    Returns the thread id and the seconds from SIGTERM to the process's exit.
    """
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
    tmp_path: Path,
) -> None:
    image = read_runtime_image()
    url = fresh_postgres_database(f"{conftest.worker_database_name()}_term")
    root = image.layout(tmp_path / "image")
    run_release_step(root, platform_environment(image, DATABASE_URL=url))

    port = free_port()
    slow = platform_environment(
        image,
        DATABASE_URL=url,
        PORT=str(port),
        GRACEFUL_SHUTDOWN_SECONDS=str(GRACE_SECONDS),
        FAKE_MODEL_TOKENS="100000",  # far longer than the grace period
        FAKE_MODEL_DELAY_MS="20",
    )
    with running_server(
        image.cmd, port=port, env=slow, cwd=root, log_path=tmp_path / "slow.log"
    ) as server:
        thread_id, elapsed = interrupt_mid_reply(server)
    assert elapsed < GRACE_SECONDS + EXIT_SLACK_SECONDS, server.log()
    assert server.process.returncode == -signal.SIGTERM, server.log()  # not SIGKILLed
    assert "timeout graceful shutdown exceeded" in server.log()

    items = asyncio.run(stored_items(url, thread_id))
    assert_interrupted_turn_saved(items)

    # The interrupted thread takes the next turn on a fresh server.
    port = free_port()
    fast = slow | {"PORT": str(port), "FAKE_MODEL_TOKENS": "3", "FAKE_MODEL_DELAY_MS": "0"}
    with running_server(
        image.cmd, port=port, env=fast, cwd=root, log_path=tmp_path / "fast.log"
    ) as server:
        response = httpx.post(
            f"{server.base_url}/chatkit",
            json=add_message_req(thread_id, "Go on"),
            headers={"X-User-Id": USER_ID},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert "thread.item.done" in event_types(sse_events(response))
    assert len(asyncio.run(stored_items(url, thread_id))) > len(items)


def test_slow_reply_through_the_real_server_carries_keepalive_comments(tmp_path: Path) -> None:
    image = read_runtime_image()
    url = fresh_postgres_database(f"{conftest.worker_database_name()}_keep")
    root = image.layout(tmp_path / "image")
    run_release_step(root, platform_environment(image, DATABASE_URL=url))
    port = free_port()
    env = platform_environment(
        image,
        DATABASE_URL=url,
        PORT=str(port),
        SSE_KEEPALIVE_SECONDS="0.05",
        FAKE_MODEL_TOKENS="4",
        FAKE_MODEL_DELAY_MS="500",  # ten keep-alive intervals between tokens
    )
    with running_server(
        image.cmd, port=port, env=env, cwd=root, log_path=tmp_path / "server.log"
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


def test_client_disconnect_mid_stream_saves_the_partial_reply(tmp_path: Path) -> None:
    image = read_runtime_image()
    url = fresh_postgres_database(f"{conftest.worker_database_name()}_gone")
    root = image.layout(tmp_path / "image")
    run_release_step(root, platform_environment(image, DATABASE_URL=url))
    port = free_port()
    env = platform_environment(
        image,
        DATABASE_URL=url,
        PORT=str(port),
        FAKE_MODEL_TOKENS="100000",
        FAKE_MODEL_DELAY_MS="20",
    )
    with running_server(
        image.cmd, port=port, env=env, cwd=root, log_path=tmp_path / "server.log"
    ) as server:
        with (
            httpx.Client(timeout=60) as client,
            client.stream(
                "POST",
                f"{server.base_url}/chatkit",
                json=create_thread_req(PROMPT),
                headers={"X-User-Id": USER_ID},
            ) as response,
        ):
            thread_id = ""
            for event in data_events(response.iter_lines()):
                if event["type"] == "thread.created":
                    thread_id = event["thread"]["id"]
                if is_reply_text(event):
                    break
        # The connection is closed; the server notices and cancels the turn.
        deadline = time.monotonic() + 30
        while len(items := asyncio.run(stored_items(url, thread_id))) < 3:
            assert time.monotonic() < deadline, (items, server.log())
            time.sleep(0.1)
    assert_interrupted_turn_saved(items)
