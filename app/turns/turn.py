"""One running turn's events, buffered in memory for every reader that follows it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from chatkit.server import StreamingResult

from app.context import RequestContext
from app.errors import AppError
from app.store.db import random_id


def new_turn_id() -> str:
    return random_id("turn")


def event_id(turn_id: str, seq: int) -> str:
    """The SSE `id:` of a turn's event: stable, so a client re-attaches after it."""
    return f"{turn_id}.{seq}"


def parse_event_id(value: str) -> tuple[str, int] | None:
    """`(turn_id, seq)` of an `event_id`, or `None` if `value` is not one."""
    turn_id, _, seq = value.rpartition(".")
    if not turn_id.startswith("turn_") or not seq.isdigit() or len(value) > 80:
        return None
    return turn_id, int(seq)


def sse_chunk(turn_id: str, seq: int, data: bytes) -> bytes:
    """An SSE event: the SDK's `data:` line(s), preceded by the event's id."""
    return b"id: " + event_id(turn_id, seq).encode() + b"\n" + data


@dataclass(eq=False)
class Turn:
    """A turn's events in order (`seq` is the position, from 1), and how it ended.

    The turn's task appends; readers `follow` from any position and wait for more. Nothing is
    dropped while the turn runs: a reader that left can come back for the rest.
    """

    id: str
    context: RequestContext
    thread_id: str | None
    events: list[bytes] = field(default_factory=list)
    error: Exception | None = None
    readers: int = 0
    cut_note: str | None = None
    """Set when the turn is cut (the cap, a shutdown): the readable note saved with the answer."""
    task: asyncio.Task[None] | None = None
    flushed: int = 0
    """How many of the events are written to `turn_events`."""
    followed: bool = False
    """Whether a reader on another process follows the turn (its events go to `turn_events`)."""
    flush_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reading: bool = False
    """Whether the turn's task is waiting on the SDK's stream (where it may be cancelled)."""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the turn ends: a reader pausing between writes (`SSE_BATCH_MS`) stops pausing."""
    _signal: asyncio.Event = field(default_factory=asyncio.Event)

    def append(self, data: bytes) -> None:
        self.events.append(data)
        self._wake()

    @property
    def done(self) -> bool:
        return self.ended.is_set()

    def finish(self, error: Exception | None = None) -> None:
        self.error = error
        self.ended.set()
        self._wake()

    def _wake(self) -> None:
        self._signal.set()
        self._signal = asyncio.Event()

    async def follow(self, after: int, idle: float) -> AsyncIterator[list[tuple[int, bytes]]]:
        """`(seq, data)` of every event after `after`, live until the turn ends; then its
        error, if it failed before any event could carry it.

        In batches: every event already there at once (a reader that fell behind catches up
        in one write). An empty batch when none came for `idle` seconds (a keep-alive's turn).
        """
        seq = after
        while True:
            signal = self._signal
            if seq < len(self.events):
                batch = list(enumerate(self.events[seq:], start=seq + 1))
                seq += len(batch)
                yield batch
                continue
            if self.done:
                if self.error is not None:
                    raise self.error
                return
            try:
                async with asyncio.timeout(idle):
                    await signal.wait()
            except TimeoutError:
                yield []

    async def first(self) -> None:
        """Wait until the turn has an event or has ended; raise its error if it has no event."""
        while not self.events and not self.done:
            await self._signal.wait()
        if not self.events and self.error is not None:
            raise self.error


class ThreadBusy(AppError):
    """A message (or action) for a thread whose previous turn is still running."""

    status, code = 409, "thread_busy"


BUSY_MESSAGE = (
    "This thread is still answering the previous message. Wait until the answer is finished, "
    "then send again."
)


class TurnStream(StreamingResult):
    """A streaming result that is a turn: its id, and its thread's id once known.

    The thread's lock is already held for `turn_id` when the thread is named.
    """

    def __init__(
        self, stream: AsyncGenerator[bytes, None], *, turn_id: str, thread_id: str | None
    ) -> None:
        super().__init__(stream)
        self.stream = stream
        self.turn_id = turn_id
        self.thread_id = thread_id
