"""`POST /chatkit`: the one protocol route. JSON for plain requests, SSE for streaming ones."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import suppress
from typing import Any

from chatkit.errors import ErrorCode
from chatkit.server import NonStreamingResult
from chatkit.types import ChatKitReq, ErrorEvent
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter
from pydantic.json_schema import PydanticJsonSchemaWarning
from starlette.types import Receive, Scope, Send

from app.errors import BadRequest
from app.http.deps import ContextDep, ServicesDep
from app.http.sse import KEEPALIVE_COMMENT
from app.store.errors import OUTAGE_MESSAGE, is_outage
from app.turns.registry import Turns
from app.turns.turn import Turn, TurnStream, sse_chunk

logger = logging.getLogger(__name__)
router = APIRouter(tags=["chatkit"])

# No caching, no proxy buffering (nginx), no proxy compression (Fly's proxy buffers what it
# compresses and leaves responses that already name an encoding alone).
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Content-Encoding": "none"}

with warnings.catch_warnings():
    # One generic model's default (a type variable) cannot be shown; the schema is right without.
    warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
    _REQUEST_SCHEMA = TypeAdapter(ChatKitReq).json_schema(
        ref_template="#/components/schemas/{model}"
    )
REQUEST_SCHEMAS: dict[str, Any] = _REQUEST_SCHEMA.pop("$defs", {})
"""The protocol's request models, for /docs (`document_request_body`)."""
REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": _REQUEST_SCHEMA,
            "example": {
                "type": "threads.create",
                "params": {
                    "input": {
                        "content": [{"type": "input_text", "text": "Hello there"}],
                        "attachments": [],
                        "inference_options": {},
                    }
                },
            },
        }
    },
}
"""The body the SDK parses (`chatkit.types.ChatKitReq`, by its `type`). The route reads the raw
bytes itself, so FastAPI cannot see it: /docs is told here, and parsing stays the SDK's."""


def document_request_body(app: FastAPI) -> None:
    """Add the request models `REQUEST_BODY` refers to to the app's OpenAPI components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(REQUEST_SCHEMAS)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


@router.post("/chatkit", openapi_extra={"requestBody": REQUEST_BODY})
async def chatkit(request: Request, services: ServicesDep, context: ContextDep) -> Response:
    body = await request.body()
    if b"\\u0000" in body or b"\x00" in body:
        # PostgreSQL text and JSONB cannot hold NUL: refuse it before anything is written.
        raise BadRequest("Strings may not contain the NUL character (\\u0000)")
    result = await services.server.process(body, context)
    if isinstance(result, NonStreamingResult):
        return Response(content=result.json, media_type="application/json")
    assert isinstance(result, TurnStream)  # every streaming result of `ChatKitBackend`
    # The turn runs in a task of its own (`app/turns/`): this response is one of its readers.
    turns = services.turns
    turn = turns.start(result.stream, context, turn_id=result.turn_id, thread_id=result.thread_id)
    turns.attach(turn)
    try:
        # Streaming requests fail lazily: wait for the first event, so a missing thread or a
        # bad request is a 4xx rather than a 200 whose connection breaks.
        await turn.first()
    except BaseException:
        turns.detach(turn)
        raise
    settings = services.settings
    stream = relay(
        turn, keepalive=settings.sse_keepalive_seconds, batch=settings.sse_batch_ms / 1000
    )
    return TurnResponse(stream, turn, turns)


class TurnResponse(StreamingResponse):
    """The SSE response of a reader the route attached to `turn`: the reader leaves when the
    response ends, however it ends. (A client gone before its body was read never starts the
    body's generator, so the generator cannot be the one to say so.)"""

    def __init__(self, stream: AsyncIterator[bytes], turn: Turn, turns: Turns) -> None:
        super().__init__(stream, media_type="text/event-stream", headers=SSE_HEADERS)
        self.turn = turn
        self.turns = turns

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.turns.detach(self.turn)


async def relay(
    turn: Turn, after: int = 0, *, keepalive: float, batch: float = 0
) -> AsyncGenerator[bytes, None]:
    """Relay a turn's events after `after`, each with its id, and the events waiting at once
    in one write; a keep-alive comment when none came for `keepalive` seconds, so that proxies
    do not cut a quiet stream. A failure after the first event ends the stream with an error
    event. The reader's leaving (`TurnResponse`) lets `ON_DISCONNECT` decide the turn's fate.

    After a write, the next waits `batch` seconds (`SSE_BATCH_MS`), so that the events of that
    time go out together: a model streams a token every few milliseconds, and each write costs
    a pass through every middleware and a system call. Neither the first event nor the turn's
    end is held back.

    The turn runs in a task of its own (`app/turns/`), so the response reads its buffer
    directly: no task or queue of its own per stream.
    """
    try:
        async for events in turn.follow(after, idle=keepalive):
            if not events:
                yield KEEPALIVE_COMMENT
                continue
            yield b"".join(sse_chunk(turn.id, seq, data) for seq, data in events)
            if batch and not turn.done:
                with suppress(TimeoutError):  # the turn's end is not held back
                    async with asyncio.timeout(batch):
                        await turn.ended.wait()
    except Exception as exc:
        yield error_chunk(exc)


def error_chunk(exc: Exception) -> bytes:
    if is_outage(exc):
        logger.warning("Stream ended by a database outage: %s", type(exc).__name__)
        event = ErrorEvent(code="custom", message=OUTAGE_MESSAGE, allow_retry=True)
    else:
        logger.error("Stream failed after it started", exc_info=exc)
        event = ErrorEvent(code=ErrorCode.STREAM_ERROR, allow_retry=True)
    return b"data: " + event.model_dump_json(exclude_none=True).encode() + b"\n\n"
