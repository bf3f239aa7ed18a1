"""Turn locks and turn events: the shared state of running turns, in the database.

A lock is a lease: the turn that holds it renews it while it runs, and an expired lease is no
lock at all, so a process that crashed mid-turn leaves nothing that outlives `TURN_LEASE_SECONDS`.
A turn's events are written only once a client on another process follows it (the lock's
`followed` flag), and kept briefly after it ends, for that reader to finish; following a thread
clears what earlier turns of it left behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

from sqlalchemy import DateTime, String, bindparam, delete, false, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.db import autocommit, upsert_insert, utcnow
from app.store.models import ThreadRow, TurnEventRow, TurnLockRow
from app.store.store import TURN_LOCK_REASON

BUSY_GRACE_SECONDS = 1.0
BUSY_RETRY_SECONDS = 0.05


RELEASE = delete(TurnLockRow).where(
    TurnLockRow.user_id == bindparam("p_user"),
    TurnLockRow.thread_id == bindparam("p_thread"),
    TurnLockRow.turn_id == bindparam("p_turn"),
)
"""Built once, as every statement a turn runs: building one costs more CPU than sending it."""
RELEASE_UNLESS_FOLLOWED = RELEASE.where(TurnLockRow.followed.is_(False))


class Signals(NamedTuple):
    """What other processes asked of this process's turns, by turn id."""

    stop: set[str]
    """Stop the turn (`DELETE .../stream` on another replica)."""
    followed: set[str]
    """A client on another process reads the turn from `turn_events`."""


class TurnLocks:
    """One running turn per thread, across every replica sharing the database."""

    def __init__(self, engine: AsyncEngine, lease: timedelta) -> None:
        self._single = autocommit(engine)
        self.lease = lease
        # The user's own thread, or no row: taking the lock also checks the thread's owner.
        owned = select(
            ThreadRow.user_id,
            ThreadRow.id,
            bindparam("p_turn", type_=String()),
            bindparam("p_reason", type_=String()),
            bindparam("p_expires", type_=DateTime()),
            false(),
            false(),
        ).where(ThreadRow.id == bindparam("p_thread"), ThreadRow.user_id == bindparam("p_user"))
        stmt = upsert_insert(engine)(TurnLockRow).from_select(
            [
                "user_id",
                "thread_id",
                "turn_id",
                "reason",
                "expires_at",
                "stop_requested",
                "followed",
            ],
            owned,
        )
        acquire = stmt.on_conflict_do_update(
            index_elements=[TurnLockRow.user_id, TurnLockRow.thread_id],
            set_={
                "turn_id": stmt.excluded.turn_id,
                "reason": stmt.excluded.reason,
                "expires_at": stmt.excluded.expires_at,
                "stop_requested": False,
                "followed": False,
            },
            where=TurnLockRow.expires_at <= bindparam("p_now", type_=TurnLockRow.expires_at.type),
        )
        self._acquire = self._single.prepare(acquire)
        self._release = self._single.prepare(RELEASE)
        self._release_unless_followed = self._single.prepare(RELEASE_UNLESS_FOLLOWED)

    async def acquire(self, user_id: str, thread_id: str, turn_id: str) -> bool:
        """Take the thread's lock for `turn_id`, unless another turn holds an unexpired one.

        False too when the thread is not the user's (or does not exist): one statement checks
        both, and the caller tells them apart only when it fails.
        """
        now = utcnow()
        row = {
            "p_user": user_id,
            "p_thread": thread_id,
            "p_turn": turn_id,
            "p_reason": TURN_LOCK_REASON,
            "p_expires": now + self.lease,
            "p_now": now,
        }
        return bool(await self._single.rowcount(self._acquire, row))

    async def acquire_soon(
        self, user_id: str, thread_id: str, turn_id: str, *, within: float = BUSY_GRACE_SECONDS
    ) -> bool:
        """`acquire`, trying again for up to `within` seconds while the thread is held.

        A client may answer a turn's last event (a client tool call, say) before the turn has
        released its lock: that turn is only writing its last rows, and lets go at once.
        """
        deadline = time.monotonic() + within
        while not await self.acquire(user_id, thread_id, turn_id):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(BUSY_RETRY_SECONDS)
        return True

    async def renew(self, user_id: str, thread_id: str, turn_id: str) -> bool:
        """Extend the lease; false if the turn no longer holds it."""
        stmt = (
            update(TurnLockRow)
            .where(
                TurnLockRow.user_id == user_id,
                TurnLockRow.thread_id == thread_id,
                TurnLockRow.turn_id == turn_id,
            )
            .values(expires_at=utcnow() + self.lease)
        )
        async with self._single.connect() as conn:
            result = await conn.execute(stmt)
        return bool(result.rowcount)

    async def release(
        self, user_id: str, thread_id: str, turn_id: str, *, unless_followed: bool = False
    ) -> bool:
        """Let the thread go; false if the turn did not hold it, or (`unless_followed`) a
        client on another process follows the turn and must first get its last events."""
        stmt = self._release_unless_followed if unless_followed else self._release
        params = {"p_user": user_id, "p_thread": thread_id, "p_turn": turn_id}
        return bool(await self._single.rowcount(stmt, params))

    async def follow(self, user_id: str, thread_id: str) -> str | None:
        """Ask the process running the thread's turn to write its events to `turn_events`, for
        a reader on this process; the turn's id, or `None` if no turn runs."""
        return await self._ask(user_id, thread_id, followed=True)

    async def request_stop(self, user_id: str, thread_id: str) -> bool:
        """Ask the process running the thread's turn to stop it; false if none runs."""
        return await self._ask(user_id, thread_id, stop_requested=True) is not None

    async def _ask(self, user_id: str, thread_id: str, **flags: bool) -> str | None:
        """Set flags on the thread's unexpired lock, read by its holder (`signals`)."""
        stmt = (
            update(TurnLockRow)
            .where(
                TurnLockRow.user_id == user_id,
                TurnLockRow.thread_id == thread_id,
                TurnLockRow.expires_at > utcnow(),
            )
            .values(**flags)
            .returning(TurnLockRow.turn_id)
        )
        async with self._single.connect() as conn:
            turn_id: str | None = (await conn.execute(stmt)).scalar_one_or_none()
        return turn_id

    async def signals(self, holds: Sequence[tuple[str, str, str]]) -> Signals:
        """Which of the turns `(user_id, thread_id, turn_id)` were asked to stop, and which are
        followed from another process."""
        signals = Signals(set(), set())
        if not holds:
            return signals
        keys = [(user_id, thread_id) for user_id, thread_id, _ in holds]
        stmt = select(TurnLockRow.turn_id, TurnLockRow.stop_requested, TurnLockRow.followed).where(
            tuple_(TurnLockRow.user_id, TurnLockRow.thread_id).in_(keys),
            TurnLockRow.stop_requested | TurnLockRow.followed,
        )
        async with self._single.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        ours = {turn_id for _, _, turn_id in holds}
        for row in rows:
            if row.turn_id in ours:
                if row.stop_requested:
                    signals.stop.add(row.turn_id)
                if row.followed:
                    signals.followed.add(row.turn_id)
        return signals

    async def running(self, user_id: str, thread_id: str) -> str | None:
        """The id of the turn holding the thread's unexpired lock, if any."""
        stmt = select(TurnLockRow.turn_id).where(
            TurnLockRow.user_id == user_id,
            TurnLockRow.thread_id == thread_id,
            TurnLockRow.expires_at > utcnow(),
        )
        async with self._single.connect() as conn:
            turn_id: str | None = (await conn.execute(stmt)).scalar_one_or_none()
        return turn_id


@dataclass(frozen=True, slots=True)
class EventBatch:
    """A turn's events from `first_seq` on."""

    user_id: str
    thread_id: str
    turn_id: str
    first_seq: int
    events: Sequence[bytes]


class TurnEvents:
    """The streamed events of each thread's latest turn, numbered from 1."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._single = autocommit(engine)
        self._engine = engine

    async def clear_others(self, user_id: str, thread_id: str, turn_id: str) -> None:
        """Forget what the thread's earlier turns left (a process that crashed while one was
        followed): the table holds one turn per thread."""
        stmt = delete(TurnEventRow).where(
            TurnEventRow.user_id == user_id,
            TurnEventRow.thread_id == thread_id,
            TurnEventRow.turn_id != turn_id,
        )
        async with self._single.connect() as conn:
            await conn.execute(stmt)

    async def append(self, batches: Sequence[EventBatch]) -> None:
        """Write the batches of any number of turns, in one statement."""
        rows = [
            {
                "user_id": batch.user_id,
                "turn_id": batch.turn_id,
                "seq": batch.first_seq + offset,
                "thread_id": batch.thread_id,
                "data": event.decode(),
            }
            for batch in batches
            for offset, event in enumerate(batch.events)
        ]
        if rows:
            async with self._engine.begin() as conn:
                await conn.execute(insert(TurnEventRow), rows)

    async def forget(self, keys: Sequence[tuple[str, str]]) -> None:
        """Delete the events of ended turns, given as `(user_id, turn_id)`."""
        if not keys:
            return
        stmt = delete(TurnEventRow).where(
            tuple_(TurnEventRow.user_id, TurnEventRow.turn_id).in_(keys)
        )
        async with self._single.connect() as conn:
            await conn.execute(stmt)

    async def after(self, user_id: str, turn_id: str, seq: int) -> list[tuple[int, bytes]]:
        """The turn's events numbered above `seq`, in order."""
        stmt = (
            select(TurnEventRow.seq, TurnEventRow.data)
            .where(
                TurnEventRow.user_id == user_id,
                TurnEventRow.turn_id == turn_id,
                TurnEventRow.seq > seq,
            )
            .order_by(TurnEventRow.seq)
        )
        async with self._single.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [(row.seq, row.data.encode()) for row in rows]
