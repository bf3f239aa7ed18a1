"""A local OpenAI-compatible Responses API endpoint, for tests and benchmarks.

`POST /v1/responses` answers `stream=true` requests with the Responses streaming SSE format
(`event: response.created` ... `response.output_text.delta` ... `response.completed`) and other
requests with a JSON response. It can fail the way real providers do: HTTP 500, HTTP 429, or a
connection dropped mid-answer.

    async with FakeOpenAI(tokens=20, delay=0.01) as fake:
        settings = make_settings(url, model_provider="openai", openai_api_key="test",
                                 openai_base_url=fake.base_url)

The payloads are written out here by hand (not with the app's code), so a test against this
endpoint checks the app against the wire format, not against itself.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.helpers.live_server import serve

Failure = Literal["500", "429", "drop"]


class DroppedConnection(Exception):
    """Raised inside the SSE body so that uvicorn aborts the connection mid-response."""


@dataclass
class FakeOpenAI:
    """Configure, then `async with` it; `base_url` ends in `/v1` as the OpenAI client expects."""

    tokens: int = 5
    """Words per streamed answer."""
    delay: float = 0.0
    """Seconds between streamed words."""
    failure: Failure | None = None
    """How every request fails, or None for success."""
    drop_after: int = 2
    """With failure="drop": words sent before the connection is cut."""
    title: str = "A title from the model"
    """The text of non-streaming answers (the app asks for titles that way)."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Every request body received, in order."""
    base_url: str = ""

    def app(self) -> Starlette:
        """The ASGI app (`/v1/responses`, and `/health` for process supervisors)."""
        return Starlette(
            routes=[
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/health", lambda _: JSONResponse({"status": "ok"})),
            ]
        )

    async def __aenter__(self) -> FakeOpenAI:
        self._server = serve(self.app())
        self.base_url = f"{await self._server.__aenter__()}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.__aexit__(None, None, None)

    def answer_words(self) -> list[str]:
        return [f"word{n}" for n in range(self.tokens)]

    async def _responses(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if self.failure == "500":
            return _error(500, "server_error", "The server had an error.")
        if self.failure == "429":
            return _error(429, "rate_limit_exceeded", "Rate limit reached.")
        if not body.get("stream"):
            return JSONResponse(_response(body, [_message(_id("msg"), self.title)], "completed"))
        return StreamingResponse(self._stream(body), media_type="text/event-stream")

    async def _stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        sequence = iter(range(10_000))
        message_id = _id("msg")

        def sse(event: dict[str, Any]) -> bytes:
            event["sequence_number"] = next(sequence)
            return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()

        yield sse({"type": "response.created", "response": _response(body, [], "in_progress")})
        yield sse(
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "status": "in_progress",
                    "content": [],
                },
            }
        )
        part = {"type": "output_text", "text": "", "annotations": []}
        where = {"item_id": message_id, "output_index": 0, "content_index": 0}
        yield sse({"type": "response.content_part.added", **where, "part": part})
        text = ""
        for count, word in enumerate(self.answer_words()):
            if self.failure == "drop" and count >= self.drop_after:
                raise DroppedConnection
            await asyncio.sleep(self.delay)
            delta = word if count == 0 else f" {word}"
            text += delta
            yield sse(
                {"type": "response.output_text.delta", **where, "delta": delta, "logprobs": []}
            )
        yield sse({"type": "response.output_text.done", **where, "text": text, "logprobs": []})
        yield sse({"type": "response.content_part.done", **where, "part": {**part, "text": text}})
        message = _message(message_id, text)
        yield sse({"type": "response.output_item.done", "output_index": 0, "item": message})
        yield sse(
            {"type": "response.completed", "response": _response(body, [message], "completed")}
        )


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _message(message_id: str, text: str) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _response(body: dict[str, Any], output: list[dict[str, Any]], status: str) -> dict[str, Any]:
    words = sum(len(part["text"].split()) for item in output for part in item["content"])
    return {
        "id": _id("resp"),
        "object": "response",
        "created_at": 1_700_000_000,
        "model": body.get("model", "unknown"),
        "status": status,
        "output": output,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "parallel_tool_calls": True,
        "usage": {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": words,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 10 + words,
        },
    }


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": code, "param": None, "code": code}},
        status_code=status,
    )
