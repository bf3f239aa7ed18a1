"""Re-attaching to a running turn (`GET /chatkit/threads/{id}/stream?after=EVENT_ID`): exactly
the missing events, in order, then the rest live; from this process's buffer, or from
`turn_events` when the turn runs on another replica sharing the database."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import httpx
from sqlalchemy import func, select

from app.agent.fake_model import FakeTurn
from app.context import RequestContext
from app.store.models import TurnEventRow
from tests.conftest import make_settings
from tests.helpers.apps import running_app
from tests.helpers.chatkit import create_thread_req
from tests.helpers.turns import (
    Event,
    deltas,
    events_of,
    is_active,
    read_until,
    text_of,
    thread_of,
    wait_for_thread,
)

ANSWER = " ".join(f"word{n}" for n in range(30))
PAUSE_AFTER = 8


async def reattach_through_the_pause(
    client: httpx.AsyncClient, user_id: str, thread_id: str, after: str, hold: asyncio.Event
) -> list[Event]:
    """Re-attach after `after`; once the replay reaches the paused answer, let it go on; read
    to the end."""
    events: list[Event] = []
    url = f"/chatkit/threads/{thread_id}/stream"
    headers = {"X-User-Id": user_id}
    async with client.stream("GET", url, params={"after": after}, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        async for event in events_of(response):
            events.append(event)
            if len(text_of(events).split()) + 3 >= PAUSE_AFTER:
                hold.set()  # what follows now comes live
    return events


async def run_reattach(
    user_id: str, start: httpx.AsyncClient, reattach: httpx.AsyncClient, hold: asyncio.Event
) -> None:
    """Start a turn on `start`, leave after three words, re-attach on `reattach`."""
    seen = await read_until(
        start, "POST", "/chatkit", user_id, body=create_thread_req(), stop=deltas(3)
    )
    thread_id = thread_of(seen)
    assert all(event.id for event in seen)
    assert [event.seq for event in seen] == list(range(1, len(seen) + 1))

    rest = await reattach_through_the_pause(reattach, user_id, thread_id, str(seen[-1].id), hold)

    # Exactly the missing events: numbered on from the last one seen, none twice, none skipped.
    assert [event.seq for event in rest] == list(range(len(seen) + 1, len(seen) + len(rest) + 1))
    assert {event.id.rpartition(".")[0] for event in seen + rest if event.id} == {
        str(seen[0].id).rpartition(".")[0]
    }
    assert (text_of(seen) + text_of(rest)).split() == ANSWER.split()
    done = [e for e in rest if e.type == "thread.item.done"]
    assert done and done[-1].data["item"]["type"] == "assistant_message"
    await wait_for_thread(reattach, user_id, thread_id, is_active)

    # Nothing runs now: the stream says so at once.
    events = await read_until(reattach, "GET", f"/chatkit/threads/{thread_id}/stream", user_id)
    assert [event.data for event in events] == [
        {"type": "stream.no_active_turn", "thread_id": thread_id}
    ]


async def test_reattach_from_the_middle_gets_exactly_the_missing_events(
    database_url: str, user: RequestContext
) -> None:
    async with running_app(make_settings(database_url), socket=True) as running:
        hold = asyncio.Event()
        running.fake_model.script.push(FakeTurn.say(ANSWER, pause_after=PAUSE_AFTER, hold=hold))
        await run_reattach(user.user_id, running.client, running.client, hold)


async def test_reattach_on_another_replica_reads_the_turn_from_the_database(
    database_url: str, user: RequestContext
) -> None:
    settings = make_settings(database_url)
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(running_app(settings, socket=True))
        two = await stack.enter_async_context(running_app(settings, socket=True))
        hold = asyncio.Event()
        one.fake_model.script.push(FakeTurn.say(ANSWER, pause_after=PAUSE_AFTER, hold=hold))
        await run_reattach(user.user_id, one.client, two.client, hold)
        assert len(two.services.turns) == 0  # replica two only read


async def test_a_turn_nobody_follows_writes_no_events(
    database_url: str, user: RequestContext
) -> None:
    """Events go to the database only for a reader on another process: none by default."""
    async with running_app(make_settings(database_url), socket=True) as running:
        seen = await read_until(
            running.client, "POST", "/chatkit", user.user_id, body=create_thread_req()
        )
        assert [event.seq for event in seen] == list(range(1, len(seen) + 1))
        assert len(seen) > 3
        await wait_for_thread(running.client, user.user_id, thread_of(seen), is_active)
        async with running.services.engine.connect() as conn:
            rows = await conn.scalar(
                select(func.count()).where(TurnEventRow.thread_id == thread_of(seen))
            )
        assert rows == 0


async def test_a_follower_the_holder_has_not_seen_yet_still_gets_every_event(
    database_url: str, user: RequestContext
) -> None:
    """The turn ends before its process reads the follow flag: its release fails, so it writes
    every event first; then they are deleted once the keep time is over."""
    settings = make_settings(database_url)
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(running_app(settings, socket=True))
        two = await stack.enter_async_context(running_app(settings, socket=True))
        holder = one.services.turns
        holder.keep_seconds = 1.0  # the follower polls every 0.2 s

        async def blind() -> None:  # never learns of the follower while the turn runs
            return None

        holder._read_signals = blind  # type: ignore[method-assign]
        hold = asyncio.Event()
        one.fake_model.script.push(FakeTurn.say(ANSWER, pause_after=PAUSE_AFTER, hold=hold))
        seen = await read_until(
            one.client, "POST", "/chatkit", user.user_id, body=create_thread_req(), stop=deltas(3)
        )
        thread_id, turn_id = thread_of(seen), str(seen[0].id).rpartition(".")[0]
        url = f"/chatkit/threads/{thread_id}/stream"
        headers = {"X-User-Id": user.user_id}
        events: list[Event] = []
        async with two.client.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200, await response.aread()  # following now
            hold.set()
            async for event in events_of(response):
                events.append(event)

        assert [event.seq for event in events] == list(range(1, len(events) + 1))
        assert {str(event.id).rpartition(".")[0] for event in events} == {turn_id}
        assert text_of(events).split() == ANSWER.split()
        for _ in range(200):  # the flusher deletes them on its next round
            if not await holder.events.after(user.user_id, turn_id, 0):
                break
            await asyncio.sleep(0.05)
        assert await holder.events.after(user.user_id, turn_id, 0) == []


async def test_reattach_is_for_the_owner_only(
    database_url: str, user: RequestContext, other_user: RequestContext
) -> None:
    async with running_app(make_settings(database_url), socket=True) as running:
        client = running.client
        seen = await read_until(client, "POST", "/chatkit", user.user_id, body=create_thread_req())
        url = f"/chatkit/threads/{thread_of(seen)}/stream"

        response = await client.get(url, headers={"X-User-Id": other_user.user_id})
        assert response.status_code == 404, response.text
        response = await client.get(url)
        assert response.status_code == 401, response.text
        response = await client.get(
            url, params={"after": "not-an-id"}, headers={"X-User-Id": user.user_id}
        )
        assert response.status_code == 400, response.text
        response = await client.get(
            "/chatkit/threads/thr_nope/stream", headers={"X-User-Id": user.user_id}
        )
        assert response.status_code == 404, response.text
