"""`POST /chatkit`: the one protocol route. JSON for plain requests, SSE for streaming ones."""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from chatkit.errors import ErrorCode
from chatkit.server import StreamingResult
from chatkit.types import ChatKitReq, ErrorEvent
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter
from pydantic.json_schema import PydanticJsonSchemaWarning

from app.errors import BadRequest
from app.http.deps import ContextDep, ServicesDep
from app.http.sse import with_keepalive
from app.store.errors import OUTAGE_MESSAGE, is_outage

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
    if not isinstance(result, StreamingResult):
        return Response(content=result.json, media_type="application/json")
    # Streaming requests fail lazily: pull the first event now, so a missing thread or a bad
    # request is a 4xx rather than a 200 whose connection breaks.
    events = aiter(result)
    first = await anext(events, None)
    if first is None:
        return StreamingResponse(iter(()), media_type="text/event-stream", headers=SSE_HEADERS)
    interval = services.settings.sse_keepalive_seconds
    stream = with_keepalive(_stream(first, events), interval, services.streams)
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


async def _stream(first: bytes, rest: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """Relay the SDK's events; a failure after the first one ends the stream with an error event."""
    yield first
    try:
        async for chunk in rest:
            yield chunk
    except Exception as exc:
        if is_outage(exc):
            logger.warning("Stream ended by a database outage: %s", type(exc).__name__)
            event = ErrorEvent(code="custom", message=OUTAGE_MESSAGE, allow_retry=True)
        else:
            logger.exception("Stream failed after it started")
            event = ErrorEvent(code=ErrorCode.STREAM_ERROR, allow_retry=True)
        yield b"data: " + event.model_dump_json(exclude_none=True).encode() + b"\n\n"
