"""Turns across real server processes on one PostgreSQL database: a re-attach on another
process, a crash (kill -9) mid-turn, SIGTERM during a background turn."""

from __future__ import annotations

import asyncio
import signal
from contextlib import ExitStack
from pathlib import Path

import httpx

from app.turns.registry import SHUTDOWN_NOTE
from tests.helpers.chatkit import add_message_req, create_thread_req, post
from tests.helpers.server import app_server
from tests.helpers.turns import (
    answer_text,
    deltas,
    get_thread,
    is_active,
    item_types,
    read_until,
    text_of,
    thread_of,
    wait_for_thread,
)

USER_ID = "turns-process-user"
QUIET = ("--log-level", "warning")
TRUST = {"AUTH_TRUST_USER_HEADERS": "true"}  # tests name their user with X-User-Id


async def test_reattach_on_another_server_process(tmp_path: Path, postgres_url: str) -> None:
    # Several seconds of answer: the re-attach comes while it runs.
    slow = TRUST | {"FAKE_MODEL_TOKENS": "150", "FAKE_MODEL_DELAY_MS": "30"}
    with ExitStack() as stack:
        one, two = (
            stack.enter_context(app_server(tmp_path, postgres_url, slow, uvicorn_args=QUIET))
            for _ in range(2)
        )
        async with (
            httpx.AsyncClient(base_url=one.base_url, timeout=60) as first,
            httpx.AsyncClient(base_url=two.base_url, timeout=60) as second,
        ):
            seen = await read_until(
                first, "POST", "/chatkit", USER_ID, body=create_thread_req(), stop=deltas(5)
            )
            thread_id = thread_of(seen)
            url = f"/chatkit/threads/{thread_id}/stream?after={seen[-1].id}"
            rest = await read_until(second, "GET", url, USER_ID)

            numbers = [event.seq for event in seen + rest]
            assert numbers == list(range(1, len(numbers) + 1)), (one.log(), two.log())
            thread = await wait_for_thread(second, USER_ID, thread_id, is_active)
            assert text_of(seen) + text_of(rest) == answer_text(thread)
            assert len(answer_text(thread).split()) == 150


async def test_a_crash_mid_turn_leaves_no_lock_after_restart(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = TRUST | {
        "FAKE_MODEL_TOKENS": "100000",
        "FAKE_MODEL_DELAY_MS": "20",
        "TURN_LEASE_SECONDS": "1",
        "TURN_PROGRESS_SECONDS": "0.1",
    }
    with app_server(tmp_path, postgres_url, settings, uvicorn_args=QUIET) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            seen = await read_until(
                client, "POST", "/chatkit", USER_ID, body=create_thread_req(), stop=deltas(20)
            )
            thread_id = thread_of(seen)
            thread = await get_thread(client, USER_ID, thread_id)
            assert thread["status"]["type"] == "locked"
        server.signal(signal.SIGKILL)
        server.wait(timeout=30)

    fast = TRUST | {"FAKE_MODEL_TOKENS": "3", "TURN_LEASE_SECONDS": "1"}
    with app_server(tmp_path, postgres_url, fast, uvicorn_args=QUIET) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            # The dead process's lease runs out: the thread is active, its last saved progress kept.
            thread = await wait_for_thread(client, USER_ID, thread_id, is_active)
            assert item_types(thread) == ["user_message", "assistant_message"]
            saved, streamed = answer_text(thread), text_of(seen)
            assert saved.strip() and (saved.startswith(streamed) or streamed.startswith(saved))
            response = await post(client, USER_ID, add_message_req(thread_id, "Go on"))
            assert response.status_code == 200, response.text
            assert is_active(await get_thread(client, USER_ID, thread_id))


async def test_sigterm_during_a_background_turn_saves_it_with_a_note(
    tmp_path: Path, postgres_url: str
) -> None:
    slow = TRUST | {"FAKE_MODEL_TOKENS": "100000", "FAKE_MODEL_DELAY_MS": "20"}
    with app_server(tmp_path, postgres_url, slow, uvicorn_args=QUIET) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            seen = await read_until(
                client, "POST", "/chatkit", USER_ID, body=create_thread_req(), stop=deltas(5)
            )
            thread_id = thread_of(seen)
            await asyncio.sleep(0.2)  # the client is gone; the turn goes on in the background
            assert (await get_thread(client, USER_ID, thread_id))["status"]["type"] == "locked"
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=30) == -signal.SIGTERM, server.log()

    with app_server(tmp_path, postgres_url, TRUST, uvicorn_args=QUIET) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            thread = await get_thread(client, USER_ID, thread_id)
    assert is_active(thread)  # released at once, not at the lease's end
    assert item_types(thread) == ["user_message", "assistant_message"]
    text = answer_text(thread)
    assert text.startswith(text_of(seen)) and text.endswith(SHUTDOWN_NOTE)
