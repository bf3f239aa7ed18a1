"""Answers that outlive the connection (real uvicorn, real sockets, the real Agents SDK Runner
driving the scripted model): the turn finishes and is saved whole after the client leaves,
the thread is locked while it runs, a reload mid-answer shows the answer so far, and the cap
cuts a turn with a readable note."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from chatkit.types import AssistantMessageItem, SDKHiddenContextItem, UserMessageItem
from sqlalchemy import select, update

from app.agent.fake_model import FakeTurn
from app.context import RequestContext
from app.store.models import TurnLockRow
from app.store.store import TURN_LOCK_REASON
from app.turns.registry import cap_note
from tests.conftest import make_settings
from tests.helpers.agent import stored_items
from tests.helpers.apps import running_app
from tests.helpers.chatkit import add_message_req, create_thread_req, post
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

ANSWER = " ".join(f"word{n}" for n in range(40))
PAUSE_AFTER = 6
POLLS = 400


async def test_a_client_that_leaves_mid_answer_finds_it_whole_on_reload(
    database_url: str, user: RequestContext
) -> None:
    settings = make_settings(database_url, turn_progress_seconds=1e-6)  # every delta is saved
    async with running_app(settings, socket=True) as running:
        client, model = running.client, running.fake_model
        hold = asyncio.Event()
        model.script.push(FakeTurn.say(ANSWER, pause_after=PAUSE_AFTER, hold=hold))

        # The client reads three words and leaves (a page refresh).
        seen = await read_until(
            client, "POST", "/chatkit", user.user_id, body=create_thread_req(), stop=deltas(3)
        )
        thread_id = thread_of(seen)

        # A reload mid-answer: the thread is busy, and the answer so far is there, once.
        def paused(thread: dict[str, object]) -> bool:
            return answer_text(thread).split() == ANSWER.split()[:PAUSE_AFTER]

        thread = await wait_for_thread(client, user.user_id, thread_id, paused)
        assert thread["status"] == {"type": "locked", "reason": TURN_LOCK_REASON}
        assert item_types(thread) == ["user_message", "assistant_message"]
        assert answer_text(thread).startswith(text_of(seen))

        # The answer goes on with nobody reading; a later reload shows it whole, thread active.
        hold.set()
        thread = await wait_for_thread(client, user.user_id, thread_id, is_active)
        assert item_types(thread) == ["user_message", "assistant_message"]
        assert answer_text(thread) == ANSWER
        assert model.script.calls[-1].finished
        assert not model.script.calls[-1].closed_early
        stored = await stored_items(running.services, user.user_id, thread_id)
        assert [type(item) for item in stored] == [UserMessageItem, AssistantMessageItem]
        assert len(running.services.turns) == 0


async def test_a_second_message_while_a_turn_runs_is_refused(
    database_url: str, user: RequestContext
) -> None:
    async with running_app(make_settings(database_url), socket=True) as running:
        client, model = running.client, running.fake_model
        hold = asyncio.Event()
        model.script.push(FakeTurn.say(ANSWER, pause_after=PAUSE_AFTER, hold=hold))
        seen = await read_until(
            client, "POST", "/chatkit", user.user_id, body=create_thread_req(), stop=deltas(1)
        )
        thread_id = thread_of(seen)

        response = await post(client, user.user_id, add_message_req(thread_id, "And now?"))
        assert response.status_code == 409, response.text
        assert response.json()["error"] == "thread_busy"
        assert "still answering" in response.json()["message"]
        assert len(model.script.calls) == 1  # no second turn started

        hold.set()
        thread = await wait_for_thread(client, user.user_id, thread_id, is_active)
        # The refused message was not saved; the thread takes the next one.
        assert item_types(thread) == ["user_message", "assistant_message"]
        response = await post(client, user.user_id, add_message_req(thread_id, "And now?"))
        assert response.status_code == 200, response.text
        thread = await get_thread(client, user.user_id, thread_id)
        assert item_types(thread) == ["user_message", "assistant_message"] * 2
        assert is_active(thread)


async def test_the_cap_cuts_a_background_turn_and_saves_it_with_a_note(
    database_url: str, user: RequestContext
) -> None:
    settings = make_settings(database_url, background_turn_seconds=0.2)
    async with running_app(settings, socket=True) as running:
        client, model = running.client, running.fake_model
        never = asyncio.Event()  # the model stalls mid-answer for good
        model.script.push(FakeTurn.say(ANSWER, pause_after=PAUSE_AFTER, hold=never))
        seen = await read_until(
            client, "POST", "/chatkit", user.user_id, body=create_thread_req(), stop=deltas(2)
        )
        thread_id = thread_of(seen)

        thread = await wait_for_thread(client, user.user_id, thread_id, is_active)
        text = answer_text(thread)
        partial = " ".join(ANSWER.split()[:PAUSE_AFTER])
        assert text == f"{partial}\n\n{cap_note(0.2)}"
        assert model.script.calls[-1].closed_early  # the model was stopped
        stored = await stored_items(running.services, user.user_id, thread_id)
        assert [type(item) for item in stored] == [
            UserMessageItem,
            AssistantMessageItem,
            SDKHiddenContextItem,
        ]


async def test_a_turn_that_fails_leaves_no_partial_answer_and_no_lock(
    database_url: str, user: RequestContext
) -> None:
    settings = make_settings(database_url, turn_progress_seconds=1e-6)  # every delta is saved
    async with running_app(settings, socket=True) as running:
        client, model = running.client, running.fake_model
        hold = asyncio.Event()
        model.script.push(FakeTurn.fail(RuntimeError("boom"), after_tokens=5, hold=hold))
        seen = await read_until(
            client, "POST", "/chatkit", user.user_id, body=create_thread_req(), stop=deltas(5)
        )
        thread_id = thread_of(seen)
        # Saved in steps while it streamed...
        thread = await wait_for_thread(
            client, user.user_id, thread_id, lambda t: "assistant_message" in item_types(t)
        )
        hold.set()
        # ...and taken back when it failed: the thread holds only complete items.
        thread = await wait_for_thread(client, user.user_id, thread_id, is_active)
        assert item_types(thread) == ["user_message"]


async def test_stopping_a_turn_saves_its_partial_answer_on_any_replica(
    database_url: str, user: RequestContext, other_user: RequestContext
) -> None:
    settings = make_settings(database_url)
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(running_app(settings, socket=True))
        two = await stack.enter_async_context(running_app(settings, socket=True))
        for stopper in (one, two):  # the turn's own process, then another replica
            never = asyncio.Event()
            one.fake_model.script.push(FakeTurn.say(ANSWER, pause_after=PAUSE_AFTER, hold=never))
            seen = await read_until(
                one.client,
                "POST",
                "/chatkit",
                user.user_id,
                body=create_thread_req(),
                stop=deltas(2),
            )
            # ChatKit's stop button closes the stream, which finishes the answer: not offered.
            options = next(e for e in seen if e.type == "stream_options")
            assert options.data["stream_options"] == {"allow_cancel": False}
            thread_id = thread_of(seen)
            url = f"/chatkit/threads/{thread_id}/stream"

            response = await stopper.client.delete(url, headers={"X-User-Id": other_user.user_id})
            assert response.status_code == 404, response.text
            response = await stopper.client.delete(url, headers={"X-User-Id": user.user_id})
            assert response.json() == {"stopped": True}

            thread = await wait_for_thread(stopper.client, user.user_id, thread_id, is_active)
            assert answer_text(thread).split() == ANSWER.split()[:PAUSE_AFTER]
            stored = await stored_items(one.services, user.user_id, thread_id)
            assert [type(item) for item in stored] == [
                UserMessageItem,
                AssistantMessageItem,
                SDKHiddenContextItem,
            ]
            response = await stopper.client.delete(url, headers={"X-User-Id": user.user_id})
            assert response.json() == {"stopped": False}


async def test_a_turn_that_lost_its_lock_is_stopped(
    database_url: str, user: RequestContext
) -> None:
    """The lease expired and another turn took the thread (here: the row is handed over): at
    its next renewal the first turn stops, keeps its partial answer, and leaves the other
    turn's lock alone. One turn per thread, even after an outage longer than the lease."""
    settings = make_settings(database_url, turn_lease_seconds=1)
    async with running_app(settings, socket=True) as running:
        client, model = running.client, running.fake_model
        model.script.push(FakeTurn.say(ANSWER, pause_after=PAUSE_AFTER, hold=asyncio.Event()))
        seen = await read_until(
            client, "POST", "/chatkit", user.user_id, body=create_thread_req(), stop=deltas(1)
        )
        thread_id = thread_of(seen)
        lock = (TurnLockRow.user_id == user.user_id) & (TurnLockRow.thread_id == thread_id)
        async with running.services.engine.begin() as conn:
            await conn.execute(update(TurnLockRow).where(lock).values(turn_id="turn_other"))

        for _ in range(POLLS):  # renewed every third of a second
            if len(running.services.turns) == 0:
                break
            await asyncio.sleep(0.05)
        assert len(running.services.turns) == 0
        assert model.script.calls[-1].closed_early
        async with running.services.engine.connect() as conn:
            holder = await conn.scalar(select(TurnLockRow.turn_id).where(lock))
        assert holder == "turn_other"
        stored = await stored_items(running.services, user.user_id, thread_id)
        assert isinstance(stored[-1], AssistantMessageItem | SDKHiddenContextItem)
