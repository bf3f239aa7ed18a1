"""The terminal client's protocol layer re-attaches to a turn whose stream dropped: the events
it reads are the turn's, in order, none missing and none twice (a real server on a socket; the
drop happens in the client's transport, as a broken connection does)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
from chatkit.types import (
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ThreadCreatedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
)

from app.agent.fake_model import FakeTurn
from app.chat.client import ChatKitClient
from app.context import RequestContext
from tests.conftest import make_settings
from tests.helpers.agent import assistant_texts, stored_items
from tests.helpers.apps import running_app

ANSWER = " ".join(f"word{n}" for n in range(30))


class DroppedStream(httpx.AsyncByteStream):
    """A response body that breaks once it has carried some of the answer's words."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self.inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        deltas = 0
        async for chunk in self.inner:
            yield chunk
            deltas += chunk.count(b"text_delta")
            if deltas >= 3:
                raise httpx.ReadError("connection reset by peer")

    async def aclose(self) -> None:
        await self.inner.aclose()


class DroppingTransport(httpx.AsyncBaseTransport):
    """Real HTTP; the first event stream of a POST drops mid-answer. The re-attach stream's
    answer lets the model go on (`reattached`): the turn cannot end before the client follows."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.dropped = False
        self.reattached = asyncio.Event()
        self.requests: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        response = await self.inner.handle_async_request(request)
        if request.method == "GET":
            self.reattached.set()  # the server answered: the client follows the turn now
        if request.method == "POST" and not self.dropped:
            self.dropped = True
            assert isinstance(response.stream, httpx.AsyncByteStream)
            response.stream = DroppedStream(response.stream)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_dropped_stream_is_reattached_and_read_to_its_end(
    database_url: str, user: RequestContext
) -> None:
    async with running_app(make_settings(database_url), socket=True) as running:
        transport = DroppingTransport()
        # The answer waits mid-way until the client re-attaches: what follows comes live.
        running.fake_model.script.push(
            FakeTurn.say(ANSWER, pause_after=10, hold=transport.reattached)
        )
        url = f"{running.client.base_url}/chatkit"
        async with ChatKitClient(url, user=user.user_id, transport=transport) as client:
            events: list[ThreadStreamEvent] = [e async for e in client.create_thread("Hi")]

        thread_id = next(e.thread.id for e in events if isinstance(e, ThreadCreatedEvent))
        assert transport.requests == [
            "POST /chatkit",
            f"GET /chatkit/threads/{thread_id}/stream",
        ]
        words = "".join(
            e.update.delta
            for e in events
            if isinstance(e, ThreadItemUpdatedEvent)
            and isinstance(e.update, AssistantMessageContentPartTextDelta)
        )
        assert words.split() == ANSWER.split()  # every word once, in order
        done = [e.item for e in events if isinstance(e, ThreadItemDoneEvent)]
        assert [type(item) for item in done][-1] is AssistantMessageItem
        stored = await stored_items(running.services, user.user_id, thread_id)
        assert assistant_texts(stored) == [ANSWER]
