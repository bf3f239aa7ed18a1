"""Server-sent events that survive proxies and shutdowns, for a stream whose source has no task
of its own (a turn of another process, read from the database: `app/http/routes/turns.py`; a
turn of this process is relayed from its buffer, `app/http/routes/chatkit.py`).

The source runs in a task of its own, registered in `OpenStreams`; the response only relays
what it hands over:
- while the source is quiet, the response sends `: keep-alive` comments, so proxies do not cut
  the connection as idle, and the source is never interrupted to do so;
- when the response is cancelled (client gone, graceful-shutdown timeout), the source is
  cancelled once and its own cancellation handling (the SDK saves the partial reply) runs to the
  end in its task, out of reach of the server's repeated cancellation of the response;
- at shutdown the application waits, boundedly, for those clean-ups before closing the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Coroutine
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

KEEPALIVE_COMMENT = b": keep-alive\n\n"
# How long shutdown waits for interrupted streams to save their partial replies. Together with
# GRACEFUL_SHUTDOWN_SECONDS it must stay below the platform's kill timeout.
STREAM_CLEANUP_SECONDS = 5.0


class OpenStreams:
    """The source tasks of the streams this process is serving."""

    def __init__(self, cleanup_seconds: float = STREAM_CLEANUP_SECONDS) -> None:
        self.cleanup_seconds = cleanup_seconds
        self._tasks: set[asyncio.Task[None]] = set()
        self._cancelled: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        return task

    def cancel(self, task: asyncio.Task[None]) -> None:
        """Cancel a source once; its clean-up then runs undisturbed.

        Remembered here as well as read from `task.cancelling()`: the clean-up's shielded
        scope uncancels the task when it exits, which would make a second cancel look safe.
        """
        if task not in self._cancelled and not task.cancelling():
            self._cancelled.add(task)
            task.cancel()

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._cancelled.discard(task)

    async def close(self) -> None:
        """Cancel the streams still running and wait up to `cleanup_seconds` for all clean-ups.

        A source that was already cancelled is not cancelled again: that would interrupt the
        clean-up it is running.
        """
        tasks = set(self._tasks)
        for task in tasks:
            self.cancel(task)
        if tasks:
            await asyncio.wait(tasks, timeout=self.cleanup_seconds)


@dataclass(frozen=True)
class _End:
    """The source is exhausted, or failed with `error`."""

    error: Exception | None = None


async def with_keepalive(
    events: AsyncGenerator[bytes, None], interval: float, streams: OpenStreams
) -> AsyncGenerator[bytes, None]:
    """Relay `events`, sending an SSE comment whenever none arrived for `interval` seconds.

    The source hands chunks over a one-slot queue; a timeout only stops waiting on the queue.
    The source also keeps one task and one context for its whole life (context variables set
    before a quiet spell can be reset after it).
    """
    queue: asyncio.Queue[bytes | _End] = asyncio.Queue(maxsize=1)
    source = streams.start(_pump(events, queue))
    try:
        while True:
            try:
                async with asyncio.timeout(interval):
                    item = await queue.get()
            except TimeoutError:
                yield KEEPALIVE_COMMENT
                continue
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        if not source.done():
            streams.cancel(source)
            # Give the clean-up its chance; if this response is cancelled again meanwhile, the
            # clean-up still finishes in its own task (and shutdown waits for it).
            await asyncio.wait({source})


async def _pump(events: AsyncGenerator[bytes, None], queue: asyncio.Queue[bytes | _End]) -> None:
    async with aclosing(events) as source:
        try:
            async for chunk in source:
                await queue.put(chunk)
        except Exception as exc:  # handed to the consumer, which raises it in the response task
            await queue.put(_End(exc))
            return
    await queue.put(_End())
