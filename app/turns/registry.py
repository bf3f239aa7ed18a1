"""Turns owned by the server process, not by the HTTP response that started them.

Each streaming request's events come from a task of this registry. The response, and any
client that re-attaches later, only read the turn's buffer (`Turn.follow`). When the last
reader leaves, `ON_DISCONNECT` decides: `finish` lets the turn run to its end (at most
`BACKGROUND_TURN_SECONDS` more, then it is cut and its partial answer saved with a note), and
`cancel` cancels it at once, as a closed connection always did.

While a turn runs its thread is locked (`app/store/turns.py`, leases renewed here) and its
answer is saved in bounded steps (`Progress`). Once a reader on another process follows it (the
lock's `followed` flag, read here with the stop requests), its events are written to
`turn_events` in batches. At shutdown, the turns still running are cut and saved.
"""

from __future__ import annotations

import asyncio
import logging
import time
from asyncio import current_task
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, aclosing, suppress
from contextvars import ContextVar
from datetime import timedelta
from typing import cast

import anyio

from app.config import Settings
from app.context import RequestContext
from app.http.sse import STREAM_CLEANUP_SECONDS
from app.observability.tracing import without_spans
from app.store.store import SQLAlchemyStore
from app.store.turns import EventBatch, TurnEvents, TurnLocks
from app.turns.progress import Progress, parse
from app.turns.turn import Turn

logger = logging.getLogger(__name__)

EVENT_FLUSH_SECONDS = 0.25
"""How often this process reads what other processes ask of its turns (a stop, a follower),
and writes its followed turns' new events to `turn_events` (one insert for all of them)."""
EVENT_KEEP_SECONDS = 10.0
"""How long an ended turn's events stay, for readers on other replicas finishing the stream
(they poll every 0.2 s); following the thread again clears what a crash left."""
CURRENT_TURN: ContextVar[Turn | None] = ContextVar("current_turn", default=None)
"""The turn whose task is running: its cancellation handling reads the turn's `cut_note`."""
SHUTDOWN_NOTE = "(This answer was cut short: the server restarted while it was being written.)"


def cap_note(seconds: float) -> str:
    return (
        f"(This answer was cut short: it ran for more than {seconds:g} s after the chat "
        "was closed.)"
    )


def current_cut_note() -> str | None:
    """The readable note for the answer of the turn being cancelled, if it was cut."""
    turn = CURRENT_TURN.get()
    return turn.cut_note if turn is not None else None


class Turns:
    """The turns this process runs, by id and by thread."""

    def __init__(
        self,
        store: SQLAlchemyStore,
        locks: TurnLocks,
        events: TurnEvents,
        *,
        on_disconnect: str = "finish",
        background_seconds: float = 300,
        progress_seconds: float = 2.0,
        cleanup_seconds: float = STREAM_CLEANUP_SECONDS,
    ) -> None:
        self.store = store
        self.locks = locks
        self.events = events
        self.on_disconnect = on_disconnect
        self.background_seconds = background_seconds
        self.progress_seconds = progress_seconds
        self.cleanup_seconds = cleanup_seconds
        self._turns: dict[str, Turn] = {}
        self._by_thread: dict[tuple[str, str], Turn] = {}
        self._cancelled: set[Turn] = set()
        self._caps: dict[Turn, asyncio.TimerHandle] = {}
        self._background: list[asyncio.Task[None]] = []
        self.keep_seconds = EVENT_KEEP_SECONDS
        self._ended: list[tuple[float, str, str]] = []
        """`(when, user_id, turn_id)` of ended turns whose events are to be deleted."""

    @classmethod
    def from_settings(cls, settings: Settings, store: SQLAlchemyStore) -> Turns:
        lease = timedelta(seconds=settings.turn_lease_seconds)
        return cls(
            store,
            TurnLocks(store.engine, lease),
            TurnEvents(store.engine),
            on_disconnect=settings.on_disconnect,
            background_seconds=settings.background_turn_seconds,
            progress_seconds=settings.turn_progress_seconds,
        )

    def __len__(self) -> int:
        return len(self._turns)

    def start(
        self,
        source: AsyncGenerator[bytes, None],
        context: RequestContext,
        *,
        turn_id: str,
        thread_id: str | None,
    ) -> Turn:
        """Run `source` (the SDK's event stream) as a turn of this process."""
        turn = Turn(id=turn_id, context=context, thread_id=thread_id)
        self._turns[turn.id] = turn
        if thread_id is not None:
            self._by_thread[(context.user_id, thread_id)] = turn
        turn.task = asyncio.create_task(self._run(turn, source), name=f"turn {turn_id}")
        return turn

    def running(self, user_id: str, thread_id: str) -> Turn | None:
        """The turn this process runs in the user's thread, if any."""
        return self._by_thread.get((user_id, thread_id))

    def attach(self, turn: Turn) -> None:
        turn.readers += 1

    def detach(self, turn: Turn) -> None:
        """A reader left: the last one leaving cancels the turn, or starts its cap."""
        turn.readers -= 1
        if turn.readers > 0 or turn.done:
            return
        if self.on_disconnect == "cancel":
            self._cancel(turn, note=None)
        elif turn not in self._caps:
            loop = asyncio.get_running_loop()
            note = cap_note(self.background_seconds)
            self._caps[turn] = loop.call_later(self.background_seconds, self._cancel, turn, note)

    def _cancel(self, turn: Turn, note: str | None) -> None:
        """Cancel a turn once; its clean-up (the SDK saves the partial answer) then runs
        undisturbed in its task.

        The cancellation must reach the turn inside the SDK's stream, whose handler saves the
        partial answer: a turn busy with its own writes between two events is cancelled as it
        asks for the next one.
        """
        if turn.task is None or turn.done or turn in self._cancelled:
            return
        self._cancelled.add(turn)
        turn.cut_note = note
        if turn.reading:
            turn.task.cancel()

    async def _run(self, turn: Turn, source: AsyncGenerator[bytes, None]) -> None:
        CURRENT_TURN.set(turn)
        progress = Progress(self.store, turn.context, self.progress_seconds)
        progress.thread_id = turn.thread_id
        error: Exception | None = None
        cancelled = False
        try:
            async with aclosing(source) as events:
                while True:
                    if turn in self._cancelled:
                        cast(asyncio.Task[None], current_task()).cancel()  # raised in anext
                    turn.reading = True
                    try:
                        data = await anext(events)
                    except StopAsyncIteration:
                        break
                    finally:
                        turn.reading = False
                    if turn.thread_id is None:
                        await self._claim_new_thread(turn, data)
                    turn.append(await progress.see(data))
        except asyncio.CancelledError:
            cancelled = True
            raise
        except Exception as exc:  # handed to the readers, who answer it (a 4xx, an error event)
            error = exc
        finally:
            with anyio.CancelScope(shield=True):
                await self._end(turn, progress, cancelled=cancelled)
            turn.finish(error)

    async def _claim_new_thread(self, turn: Turn, data: bytes) -> None:
        """`threads.create`: the first event names the new thread, which no one else knows yet."""
        event = parse(data)
        if event is None or event.get("type") != "thread.created":
            return
        turn.thread_id = event["thread"]["id"]
        self._by_thread[(turn.context.user_id, turn.thread_id)] = turn
        await self.locks.acquire(turn.context.user_id, turn.thread_id, turn.id)

    async def _flush(self, *turns: Turn) -> None:
        """Write the turns' events not yet written to the database, in one insert.

        A failed write is retried with the next batch: the turns go on without it.
        """
        async with AsyncExitStack() as stack:
            batches: list[tuple[Turn, EventBatch]] = []
            for turn in turns:
                await stack.enter_async_context(turn.flush_lock)
                if turn.thread_id is None or turn.flushed == len(turn.events):
                    continue
                batch = EventBatch(
                    turn.context.user_id,
                    turn.thread_id,
                    turn.id,
                    turn.flushed + 1,
                    turn.events[turn.flushed :],
                )
                batches.append((turn, batch))
            if not batches:
                return
            try:
                await self.events.append([batch for _, batch in batches])
            except Exception as exc:
                logger.warning("Could not save turn events: %s", type(exc).__name__)
                return
            for turn, batch in batches:
                turn.flushed += len(batch.events)

    async def _end(self, turn: Turn, progress: Progress, *, cancelled: bool) -> None:
        """Last writes, then the lock goes: a reader that sees no lock has every event.

        A turn no one follows from elsewhere lets go in one statement, which fails if a
        follower came since this process last looked: then its events are written first.
        """
        try:
            if not cancelled:
                await progress.discard()  # messages a failed turn never finished
            if turn.thread_id is not None:
                user_id, thread_id = turn.context.user_id, turn.thread_id
                if turn.followed or not await self.locks.release(
                    user_id, thread_id, turn.id, unless_followed=True
                ):
                    await self._flush(turn)
                    await self.locks.release(user_id, thread_id, turn.id)
                if turn.flushed:
                    self._ended.append((time.monotonic() + self.keep_seconds, user_id, turn.id))
        except Exception as exc:  # the lease expires on its own
            logger.warning("Turn %s ended without its clean-up: %s", turn.id, type(exc).__name__)
        finally:
            self._forget(turn)

    def _forget(self, turn: Turn) -> None:
        self._turns.pop(turn.id, None)
        if turn.thread_id is not None:
            key = (turn.context.user_id, turn.thread_id)
            if self._by_thread.get(key) is turn:
                del self._by_thread[key]
        self._cancelled.discard(turn)
        if (handle := self._caps.pop(turn, None)) is not None:
            handle.cancel()

    # lifespan

    async def renew_leases(self) -> None:
        """Keep the locks of the running turns, every third of the lease. A turn whose lock is
        gone (it expired, say through a database outage longer than the lease, and another
        turn may hold the thread now) is stopped: one turn per thread, always."""
        without_spans()
        every = self.locks.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            for turn in list(self._turns.values()):
                if turn.thread_id is None or turn.done:
                    continue
                try:
                    held = await self.locks.renew(turn.context.user_id, turn.thread_id, turn.id)
                except Exception as exc:
                    kind = type(exc).__name__
                    logger.warning("Could not renew turn %s's lock: %s", turn.id, kind)
                    continue
                if not held and not turn.done:
                    logger.warning("Turn %s lost its thread's lock: stopping it", turn.id)
                    self.stop(turn)

    async def flush_events(self) -> None:
        """Every `EVENT_FLUSH_SECONDS`: read the stop requests and followers of the running
        turns, then write the followed turns' new events, one insert for all of them (one
        connection, whatever the number of turns), never one per event."""
        without_spans()
        while True:
            await asyncio.sleep(EVENT_FLUSH_SECONDS)
            await self._read_signals()
            await self._flush(*(turn for turn in self._turns.values() if turn.followed))
            await self._forget_ended()

    def stop(self, turn: Turn) -> None:
        """Stop a turn as its user asked: the partial answer is saved, as on a cancel."""
        self._cancel(turn, note=None)

    async def _read_signals(self) -> None:
        """Stop the turns whose stop was asked on another replica (`TurnLocks.request_stop`);
        mark the turns a reader on another process follows (`TurnLocks.follow`)."""
        holds = [
            (turn.context.user_id, turn.thread_id, turn.id)
            for turn in self._turns.values()
            if turn.thread_id is not None
        ]
        try:
            signals = await self.locks.signals(holds)
        except Exception as exc:
            logger.warning("Could not read stop requests: %s", type(exc).__name__)
            return
        for turn_id in signals.followed:
            if (turn := self._turns.get(turn_id)) is not None:
                turn.followed = True
        for turn_id in signals.stop:
            if (turn := self._turns.get(turn_id)) is not None:
                self.stop(turn)

    async def _forget_ended(self) -> None:
        """Delete the events of the turns that ended more than `EVENT_KEEP_SECONDS` ago."""
        now = time.monotonic()
        due = [(user_id, turn_id) for when, user_id, turn_id in self._ended if when <= now]
        if not due:
            return
        try:
            await self.events.forget(due)
        except Exception as exc:  # a thread's next turn clears them
            logger.warning("Could not delete ended turns' events: %s", type(exc).__name__)
        self._ended = [entry for entry in self._ended if entry[0] > now]

    def open(self) -> None:
        self._background = [
            asyncio.create_task(self.renew_leases(), name="turn leases"),
            asyncio.create_task(self.flush_events(), name="turn events"),
        ]

    async def close(self) -> None:
        """Cut the turns still running (each saves its partial answer with a note) and wait up
        to `cleanup_seconds` for their clean-ups; then stop renewing."""
        turns = list(self._turns.values())
        for turn in turns:
            self._cancel(turn, SHUTDOWN_NOTE)
        tasks = {turn.task for turn in turns if turn.task is not None}
        if tasks:
            await asyncio.wait(tasks, timeout=self.cleanup_seconds)
        for task in self._background:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
