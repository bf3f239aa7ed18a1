"""Keep-alive comments on quiet streams, without disturbing the stream they wrap; a turn's
events relayed in batches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, MutableMapping
from contextvars import ContextVar
from dataclasses import replace
from typing import Any, cast

from app.context import RequestContext
from app.http.routes.chatkit import TurnResponse, relay
from app.http.sse import KEEPALIVE_COMMENT, OpenStreams, with_keepalive
from app.server import ChatKitBackend
from app.services import Services
from app.turns.registry import Turns
from app.turns.turn import Turn, new_turn_id, sse_chunk
from tests.conftest import make_settings
from tests.helpers.apps import running_app
from tests.helpers.chatkit import create_thread_req, event_types, stream

INTERVAL = 0.01


async def next_data(events: AsyncIterator[bytes]) -> tuple[int, bytes]:
    """The next chunk that is not a keep-alive comment, and how many comments came before it."""
    comments = 0
    while (chunk := await anext(events)) == KEEPALIVE_COMMENT:
        comments += 1
    return comments, chunk


async def test_quiet_source_gets_comments_and_is_never_interrupted() -> None:
    release = asyncio.Event()
    cancelled: list[bool] = []

    async def source() -> AsyncGenerator[bytes, None]:
        try:
            yield b"data: 1\n\n"
            await release.wait()
            yield b"data: 2\n\n"
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    events = with_keepalive(source(), INTERVAL, OpenStreams())
    assert await anext(events) == b"data: 1\n\n"
    # The source waits on an event nobody has set: only comments can come out meanwhile.
    assert await anext(events) == KEEPALIVE_COMMENT
    assert await anext(events) == KEEPALIVE_COMMENT
    release.set()
    assert (await next_data(events))[1] == b"data: 2\n\n"
    assert [chunk async for chunk in events if chunk != KEEPALIVE_COMMENT] == []
    assert cancelled == []


async def test_a_busy_source_gets_no_comments() -> None:
    async def source() -> AsyncGenerator[bytes, None]:
        for number in range(50):
            yield f"data: {number}\n\n".encode()

    chunks = [chunk async for chunk in with_keepalive(source(), 60, OpenStreams())]
    assert chunks == [f"data: {number}\n\n".encode() for number in range(50)]


async def test_closing_the_stream_cancels_the_source_and_waits_for_its_cleanup() -> None:
    steps: list[str] = []

    async def source() -> AsyncGenerator[bytes, None]:
        try:
            yield b"data: 1\n\n"
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # cleanup that awaits, as the SDK's saving of partial items
            steps.append("saved partial reply")
            raise

    events = with_keepalive(source(), INTERVAL, OpenStreams())
    await anext(events)
    assert await anext(events) == KEEPALIVE_COMMENT
    await events.aclose()  # what a client disconnect or a server shutdown does
    assert steps == ["saved partial reply"]


async def test_source_errors_reach_the_consumer() -> None:
    async def source() -> AsyncGenerator[bytes, None]:
        yield b"data: 1\n\n"
        raise RuntimeError("model went away")

    events = with_keepalive(source(), INTERVAL, OpenStreams())
    await anext(events)
    try:
        await next_data(events)
    except RuntimeError as exc:
        assert str(exc) == "model went away"
    else:
        raise AssertionError("the source's error was swallowed")


async def test_source_keeps_one_context_across_comments() -> None:
    """Context variables set before a quiet spell can be reset after it (tracing does this);
    running each step in a task of its own would break that."""
    current: ContextVar[str] = ContextVar("current")
    release = asyncio.Event()

    async def source() -> AsyncGenerator[bytes, None]:
        token = current.set("turn")
        yield b"data: 1\n\n"
        await release.wait()
        yield f"data: {current.get()}\n\n".encode()
        current.reset(token)

    events = with_keepalive(source(), INTERVAL, OpenStreams())
    await anext(events)
    assert await anext(events) == KEEPALIVE_COMMENT
    release.set()
    assert (await next_data(events))[1] == b"data: turn\n\n"
    assert [chunk async for chunk in events if chunk != KEEPALIVE_COMMENT] == []


async def test_closing_open_streams_cancels_them_and_waits_for_their_cleanup() -> None:
    streams = OpenStreams()
    steps: list[str] = []

    async def source() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0)
            steps.append("saved partial reply")
            raise

    task = streams.start(source())
    await asyncio.sleep(0)
    assert len(streams) == 1
    await streams.close()  # what the application's shutdown does
    assert steps == ["saved partial reply"]
    assert task.cancelled()
    assert len(streams) == 0


async def test_closing_open_streams_does_not_interrupt_a_cleanup_under_way() -> None:
    streams = OpenStreams()
    database_answers = asyncio.Event()
    steps: list[str] = []

    async def source() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await database_answers.wait()  # saving the partial reply takes a while
            steps.append("saved partial reply")
            raise

    task = streams.start(source())
    await asyncio.sleep(0)
    task.cancel()  # the response went away first, as on a graceful-shutdown timeout
    await asyncio.sleep(0)
    closing = asyncio.create_task(streams.close())
    await asyncio.sleep(0)
    database_answers.set()
    await closing
    assert steps == ["saved partial reply"]


class SlowBackend(ChatKitBackend):
    """Thinks for a while before it answers, as a model does."""

    async def respond(self, thread, input_user_message, context: RequestContext):
        await asyncio.sleep(20 * INTERVAL)
        async for event in super().respond(thread, input_user_message, context):
            yield event


async def test_chatkit_stream_carries_comments_while_the_reply_is_slow(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, sse_keepalive_seconds=INTERVAL)
    built = Services.build(settings)
    slow = SlowBackend(
        built.store,
        built.attachments,
        built.server.assistant,
        tasks=built.tasks,
        feedback=built.feedback,
        quota=built.quota,
        approvals=built.server.approvals,
        model_inputs=built.model_inputs,
    )
    async with running_app(settings, services=replace(built, server=slow)) as running:
        client = running.client
        response = await client.post(
            "/chatkit", json=create_thread_req("Hi"), headers={"X-User-Id": "sse-user"}
        )
        assert response.status_code == 200
        assert KEEPALIVE_COMMENT.decode() in response.text
        assert response.headers["content-encoding"] == "none"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["cache-control"] == "no-cache"
        events = await stream(client, "sse-user", create_thread_req("Again"))
        assert event_types(events)[0] == "thread.created"
        assert "thread.item.done" in event_types(events)


class DetachNoted:
    """Stands in for the registry, whose only part `TurnResponse` uses is `detach`."""

    def __init__(self) -> None:
        self.detached: list[Turn] = []

    def detach(self, turn: Turn) -> None:
        self.detached.append(turn)


async def relayed(batch: float, appends: int) -> list[bytes]:
    """The writes of `relay` for a turn with one event at the start, then `appends` more
    appended at once right after the first write, then its end."""
    turn = Turn(new_turn_id(), RequestContext(user_id="u", auth_method="development"), None)
    turn.append(b"data: 0\n\n")
    writes: list[bytes] = []
    first_written = asyncio.Event()

    async def read() -> None:
        stream = relay(turn, keepalive=30, batch=batch)
        async for chunk in stream:
            writes.append(chunk)
            first_written.set()

    reader = asyncio.create_task(read())
    await first_written.wait()
    for n in range(1, appends + 1):
        turn.append(f"data: {n}\n\n".encode())
        await asyncio.sleep(0.001)  # the reader could write each one now
    await asyncio.sleep(batch + 0.05)
    turn.finish()
    await reader
    return writes


async def test_a_stream_writes_its_first_event_at_once_and_then_in_batches() -> None:
    writes = await relayed(batch=0.2, appends=5)
    assert len(writes) == 2
    assert writes[0].count(b"data: ") == 1  # never held back
    assert writes[1].count(b"data: ") == 5  # the events of the batch's time, in one write
    assert [
        int(line.split(b".")[-1]) for line in writes[1].split(b"\n") if line.startswith(b"id: ")
    ] == [2, 3, 4, 5, 6]


async def test_without_batching_each_event_is_written_as_it_comes() -> None:
    writes = await relayed(batch=0, appends=5)
    assert [w.count(b"data: ") for w in writes] == [1, 1, 1, 1, 1, 1]


async def test_the_end_of_a_turn_is_not_held_back_by_a_batch() -> None:
    turn = Turn(new_turn_id(), RequestContext(user_id="u", auth_method="development"), None)
    turn.append(b"data: 0\n\n")
    stream = relay(turn, keepalive=30, batch=10.0)
    assert await anext(stream) == sse_chunk(turn.id, 1, b"data: 0\n\n")
    pending = asyncio.create_task(anext(stream, None))  # waits out the batch, at most
    await asyncio.sleep(0.01)
    turn.finish()
    async with asyncio.timeout(1):  # not 10 s
        assert await pending is None


async def test_a_reader_gone_before_its_body_was_read_still_leaves_the_turn() -> None:
    """The client disconnects while the response starts: the body (`relay`) is never read,
    yet the reader is counted out, so `ON_DISCONNECT` and the background cap apply."""
    turn = Turn(new_turn_id(), RequestContext(user_id="u", auth_method="development"), None)
    turn.append(b"data: 0\n\n")
    registry = DetachNoted()
    sent: list[str] = []

    async def receive() -> dict[str, str]:
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message["type"])
        await asyncio.sleep(1)  # the start of the response is slow to go out

    scope = {"type": "http", "asgi": {"spec_version": "2.3"}}
    response = TurnResponse(relay(turn, keepalive=30), turn, cast(Turns, registry))
    async with asyncio.timeout(0.5):
        await response(scope, receive, send)
    assert sent == ["http.response.start"]  # cut there: no body was read
    assert registry.detached == [turn]
