"""Server-sent events through proxies: comments that keep quiet streams from being cut as idle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

KEEPALIVE_COMMENT = b": keep-alive\n\n"


@dataclass(frozen=True)
class _End:
    """The source is exhausted, or failed with `error`."""

    error: Exception | None = None


async def with_keepalive(
    events: AsyncGenerator[bytes, None], interval: float
) -> AsyncIterator[bytes]:
    """Relay `events`, sending an SSE comment whenever none arrived for `interval` seconds.

    The source runs in a task of its own and hands chunks over a one-slot queue, so a timeout only
    stops waiting on the queue and never interrupts the source mid-step (the ChatKit SDK would take
    that for a cancelled stream). The source also keeps one task and one context for its whole
    life. Closing this generator (client gone, server shutting down) cancels the source, whose
    own cancellation handling then runs.
    """
    queue: asyncio.Queue[bytes | _End] = asyncio.Queue(maxsize=1)
    source = asyncio.create_task(_pump(events, queue))
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
            source.cancel()
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
