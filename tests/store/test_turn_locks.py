"""Thread locks as leases, on both databases: one holder at a time, the thread reads as locked
only while a lease runs, an expired lease is no lock, and the lock is never saved with the
thread's own data."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from chatkit.types import ActiveStatus, LockedStatus, ThreadMetadata
from sqlalchemy.ext.asyncio import AsyncEngine

from app.context import RequestContext
from app.store.store import TURN_LOCK_REASON, SQLAlchemyStore, new_id
from app.store.turns import EventBatch, TurnEvents, TurnLocks
from app.turns.turn import new_turn_id

LOCKED = LockedStatus(reason=TURN_LOCK_REASON)


async def new_thread(store: SQLAlchemyStore, user: RequestContext) -> ThreadMetadata:
    thread = ThreadMetadata(id=new_id("thread"), created_at=datetime.now())
    await store.save_thread(thread, user)
    return thread


async def test_one_turn_holds_a_thread_and_readers_see_it_locked(
    engine: AsyncEngine, store: SQLAlchemyStore, user: RequestContext, other_user: RequestContext
) -> None:
    locks = TurnLocks(engine, timedelta(seconds=30))
    thread = await new_thread(store, user)
    first, second = new_turn_id(), new_turn_id()

    assert await locks.acquire(user.user_id, thread.id, first)
    assert not await locks.acquire(user.user_id, thread.id, second)
    assert await locks.running(user.user_id, thread.id) == first
    assert await locks.running(other_user.user_id, thread.id) is None
    assert (await store.load_thread(thread.id, user)).status == LOCKED
    page = await store.load_threads(10, None, "desc", user)
    assert [t.status for t in page.data if t.id == thread.id] == [LOCKED]

    # Saving the thread mid-turn (a new title) never stores the lock itself.
    loaded = await store.load_thread(thread.id, user)
    loaded.title = "Titled"
    await store.save_thread(loaded, user)
    assert not await locks.release(user.user_id, thread.id, second)  # not the holder
    assert (await store.load_thread(thread.id, user)).status == LOCKED
    assert await locks.release(user.user_id, thread.id, first)
    thread = await store.load_thread(thread.id, user)
    assert thread.status == ActiveStatus() and thread.title == "Titled"
    assert await locks.acquire(user.user_id, thread.id, second)


async def test_an_expired_lease_is_no_lock(
    engine: AsyncEngine, store: SQLAlchemyStore, user: RequestContext
) -> None:
    locks = TurnLocks(engine, timedelta(seconds=0.2))
    thread = await new_thread(store, user)
    crashed, next_turn = new_turn_id(), new_turn_id()
    assert await locks.acquire(user.user_id, thread.id, crashed)
    await asyncio.sleep(0.3)  # the holder died: nobody renews its lease

    assert (await store.load_thread(thread.id, user)).status == ActiveStatus()
    assert await locks.running(user.user_id, thread.id) is None
    assert await locks.acquire(user.user_id, thread.id, next_turn)
    assert not await locks.renew(user.user_id, thread.id, crashed)  # it lost the lock
    assert await locks.renew(user.user_id, thread.id, next_turn)


async def test_a_thread_keeps_only_its_latest_turns_events(
    engine: AsyncEngine, store: SQLAlchemyStore, user: RequestContext, other_user: RequestContext
) -> None:
    events = TurnEvents(engine)
    thread, other = await new_thread(store, user), await new_thread(store, other_user)
    old, new = new_turn_id(), new_turn_id()
    await events.append(
        [
            EventBatch(user.user_id, thread.id, old, 1, [b"data: 1\n\n", b"data: 2\n\n"]),
            EventBatch(other_user.user_id, other.id, new, 1, [b"data: other\n\n"]),
        ]
    )
    await events.append([EventBatch(user.user_id, thread.id, old, 3, [b"data: 3\n\n"])])
    assert [seq for seq, _ in await events.after(user.user_id, old, 1)] == [2, 3]
    assert await events.after(other_user.user_id, old, 0) == []

    await events.clear_others(user.user_id, thread.id, new)
    await events.append([EventBatch(user.user_id, thread.id, new, 1, [b"data: x\n\n"])])
    assert await events.after(user.user_id, old, 0) == []
    assert await events.after(user.user_id, new, 0) == [(1, b"data: x\n\n")]
    assert await events.after(other_user.user_id, new, 0) == [(1, b"data: other\n\n")]


async def test_the_lock_is_only_taken_in_the_users_own_thread(
    engine: AsyncEngine, store: SQLAlchemyStore, user: RequestContext, other_user: RequestContext
) -> None:
    """Taking the lock checks the thread's owner in the same statement (no load before it)."""
    locks = TurnLocks(engine, timedelta(seconds=30))
    thread = await new_thread(store, user)
    assert not await locks.acquire(other_user.user_id, thread.id, new_turn_id())
    assert not await locks.acquire(user.user_id, new_id("thread"), new_turn_id())
    assert await locks.running(user.user_id, thread.id) is None
    assert await locks.running(other_user.user_id, thread.id) is None
    assert await locks.acquire(user.user_id, thread.id, new_turn_id())


async def test_a_followed_turn_is_not_released_until_its_events_are_written(
    engine: AsyncEngine, store: SQLAlchemyStore, user: RequestContext, other_user: RequestContext
) -> None:
    locks = TurnLocks(engine, timedelta(seconds=30))
    thread, quiet = await new_thread(store, user), await new_thread(store, user)
    followed_turn, quiet_turn = new_turn_id(), new_turn_id()
    assert await locks.follow(user.user_id, thread.id) is None  # no turn runs: nothing to follow
    assert await locks.acquire(user.user_id, thread.id, followed_turn)
    assert await locks.acquire(user.user_id, quiet.id, quiet_turn)
    assert await locks.follow(other_user.user_id, thread.id) is None  # not theirs
    assert await locks.follow(user.user_id, thread.id) == followed_turn

    holds = [(user.user_id, thread.id, followed_turn), (user.user_id, quiet.id, quiet_turn)]
    signals = await locks.signals(holds)
    assert signals.followed == {followed_turn} and signals.stop == set()
    assert await locks.request_stop(user.user_id, quiet.id)
    signals = await locks.signals(holds)
    assert signals.followed == {followed_turn} and signals.stop == {quiet_turn}

    # The holder's one-statement release fails for the followed turn only.
    assert not await locks.release(user.user_id, thread.id, followed_turn, unless_followed=True)
    assert await locks.running(user.user_id, thread.id) == followed_turn
    assert await locks.release(user.user_id, quiet.id, quiet_turn, unless_followed=True)
    assert await locks.release(user.user_id, thread.id, followed_turn)


async def test_a_turn_that_replaces_an_expired_followed_one_starts_unfollowed(
    engine: AsyncEngine, store: SQLAlchemyStore, user: RequestContext
) -> None:
    thread = await new_thread(store, user)
    crashed, next_turn = new_turn_id(), new_turn_id()
    assert await TurnLocks(engine, timedelta(seconds=0.2)).acquire(user.user_id, thread.id, crashed)
    locks = TurnLocks(engine, timedelta(seconds=30))
    assert await locks.follow(user.user_id, thread.id) == crashed
    await asyncio.sleep(0.3)  # the holder died with a follower
    assert await locks.acquire(user.user_id, thread.id, next_turn)
    assert (await locks.signals([(user.user_id, thread.id, next_turn)])).followed == set()
    assert await locks.release(user.user_id, thread.id, next_turn, unless_followed=True)
