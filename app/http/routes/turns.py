"""`GET /chatkit/threads/{thread_id}/stream?after=EVENT_ID`: re-attach to a running turn;
`DELETE` the same URL to stop it.

For clients that can (the terminal client, anyone's own UI; ChatKit's has no such request):
the turn's events after `EVENT_ID` (every event, if it names another turn or none), then the
rest live, until the turn ends. With no turn running, one `stream.no_active_turn` event.

A turn of this process is read from its buffer; one of another process (a replica, a worker)
from `turn_events`, which that process writes once it sees the turn followed (within
`EVENT_FLUSH_SECONDS`), polled until its lock is released (its last events are written before).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from app.errors import BadRequest, NotFound
from app.http.deps import ContextDep, ServicesDep
from app.http.routes.chatkit import SSE_HEADERS, TurnResponse, relay
from app.http.sse import with_keepalive
from app.store.db import has_id_shape
from app.store.store import THREAD_PREFIXES
from app.store.turns import TurnEvents, TurnLocks
from app.turns.turn import parse_event_id, sse_chunk

router = APIRouter(prefix="/chatkit/threads", tags=["turns"])
POLL_SECONDS = 0.2
"""How often a reader of another process's turn looks for new events."""


@router.get("/{thread_id}/stream")
async def reattach(
    thread_id: str,
    services: ServicesDep,
    context: ContextDep,
    after: str | None = Query(default=None, max_length=100),
) -> StreamingResponse:
    if not has_id_shape(thread_id, THREAD_PREFIXES):
        raise NotFound("Thread not found")
    position = parse_event_id(after) if after else None
    if after and position is None:
        raise BadRequest("after must be an event id of this stream (the SSE id: field)")
    await services.store.load_thread(thread_id, context)  # another user's: a 404
    user_id = context.user_id
    turns = services.turns
    interval = services.settings.sse_keepalive_seconds
    if (turn := turns.running(user_id, thread_id)) is not None:
        seq = position[1] if position is not None and position[0] == turn.id else 0
        turns.attach(turn)
        batch = services.settings.sse_batch_ms / 1000
        return TurnResponse(relay(turn, seq, keepalive=interval, batch=batch), turn, turns)
    elif (turn_id := await turns.locks.follow(user_id, thread_id)) is not None:
        await turns.events.clear_others(user_id, thread_id, turn_id)
        seq = position[1] if position is not None and position[0] == turn_id else 0
        stored = follow_stored(turns.locks, turns.events, user_id, thread_id, turn_id, seq)
        stream = with_keepalive(stored, interval, services.streams)
    else:
        stream = no_active_turn(thread_id)
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


@router.delete("/{thread_id}/stream")
async def stop(thread_id: str, services: ServicesDep, context: ContextDep) -> dict[str, bool]:
    """Stop the thread's running turn, on whichever process runs it: its partial answer is
    saved, as when ChatKit's stop button closes a stream under `ON_DISCONNECT=cancel`.
    `{"stopped": false}` when no turn runs."""
    if not has_id_shape(thread_id, THREAD_PREFIXES):
        raise NotFound("Thread not found")
    await services.store.load_thread(thread_id, context)  # another user's: a 404
    turns = services.turns
    if (turn := turns.running(context.user_id, thread_id)) is not None:
        turns.stop(turn)
        return {"stopped": True}
    return {"stopped": await turns.locks.request_stop(context.user_id, thread_id)}


async def follow_stored(
    locks: TurnLocks,
    events: TurnEvents,
    user_id: str,
    thread_id: str,
    turn_id: str,
    seq: int,
) -> AsyncGenerator[bytes, None]:
    """Another process's turn, from the database: its events after `seq`, until it ends."""
    while True:
        running = await locks.running(user_id, thread_id) == turn_id
        for number, data in await events.after(user_id, turn_id, seq):
            yield sse_chunk(turn_id, number, data)
            seq = number
        if not running:  # released after its last events were written: all are read
            return
        await asyncio.sleep(POLL_SECONDS)


async def no_active_turn(thread_id: str) -> AsyncGenerator[bytes, None]:
    event = {"type": "stream.no_active_turn", "thread_id": thread_id}
    yield b"data: " + json.dumps(event).encode() + b"\n\n"
