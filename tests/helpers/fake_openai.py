"""A local OpenAI-compatible model server, for tests and benchmarks: both APIs, OpenAI's and
Azure's URLs.

- `POST /v1/responses` (Azure: `/openai/responses`) answers `stream=true` requests with the
  Responses streaming SSE format (`event: response.created` ... `response.output_text.delta` ...
  `response.completed`) and other requests with a JSON response;
- `POST /v1/chat/completions` (Azure: `/openai/deployments/{name}/chat/completions`) answers with
  `chat.completion.chunk` events (content deltas, `tool_calls` deltas split across chunks, a
  usage chunk when `stream_options.include_usage` is set, then `data: [DONE]`), or a
  `chat.completion` without `stream`.

- `/v1/files` (Azure: `/openai/files`) is a Files API stand-in: upload (multipart `file` and
  `purpose`), retrieve, delete. `forget(file_id)` drops a file as an expiry would; a model request
  naming a file id it does not hold is refused with a 404 naming the id, as OpenAI's is.

It fails the way real providers do: HTTP 500, HTTP 429, or a connection dropped mid-answer; a
route left out of `apis` answers a bare 404, as a server without that API does.

    async with FakeOpenAI(tokens=20, delay=0.01) as fake:
        fake.script.append(FakeReply.call("add_task", title="Milk"))
        settings = make_settings(url, model_provider="openai", openai_api_key="test",
                                 openai_base_url=fake.base_url)

The payloads are written out here by hand (not with the app's code or the SDK's types), so a
test against this server checks the app against the wire format, not against itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.helpers.live_server import serve

Failure = Literal["500", "429", "drop"]
Api = Literal["responses", "chat_completions", "files"]
INPUT_TOKENS = 10
"""Every request reports this many input tokens."""
KEPT_FILE_BYTES = 1_000_000
"""Uploaded files up to this size keep their bytes (for tests to compare); larger ones only
their size and digest, so ten 20 MB uploads do not sit in memory."""


class DroppedConnection(Exception):
    """Raised inside the SSE body so that uvicorn aborts the connection mid-response."""


@dataclass(frozen=True)
class FakeReply:
    """One scripted streamed answer: text, then tool calls (name, arguments)."""

    text: str | None = None
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()

    @classmethod
    def call(cls, name: str, text: str | None = None, **arguments: Any) -> FakeReply:
        return cls(text=text, tool_calls=((name, arguments),))


@dataclass(frozen=True)
class Received:
    """What one request looked like on the wire."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    size: int = 0
    """The request body's length in bytes."""


@dataclass(frozen=True)
class FakeFile:
    """One uploaded file."""

    id: str
    filename: str
    purpose: str
    mime_type: str
    size: int
    sha256: str
    data: bytes | None
    """The bytes, if at most `KEPT_FILE_BYTES`."""

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.size,
            "created_at": 1_700_000_000,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass
class FakeOpenAI:
    """Configure, then `async with` it; `base_url` ends in `/v1` as the OpenAI client expects,
    `root_url` is what Azure's client takes as its endpoint."""

    tokens: int = 5
    """Words per unscripted streamed answer."""
    delay: float = 0.0
    """Seconds between streamed words."""
    failure: Failure | None = None
    """How every request fails, or None for success."""
    drop_after: int = 2
    """With failure="drop": words sent before the connection is cut."""
    title: str = "A title from the model"
    """The text of non-streaming answers (the app asks for titles that way)."""
    apis: tuple[Api, ...] = ("responses", "chat_completions", "files")
    """The APIs served; the others' routes answer 404."""
    script: deque[FakeReply] = field(default_factory=deque)
    """Streamed answers to give, in order, before the unscripted words."""
    models: frozenset[str] | None = None
    """The model names served (others get OpenAI's 404 `model_not_found`); None: any."""
    received: list[Received] = field(default_factory=list)
    """Every model request, in order."""
    cached_tokens: int = 0
    """Of the `INPUT_TOKENS` each request reports, how many were cached."""
    reasoning_tokens: int = 0
    """Reasoning tokens each request reports (beside its output tokens)."""
    refuse_uploads: bool = False
    """Answer every upload with a 400, as a provider refusing a file does."""
    keep_bodies: bool = True
    """False (benchmarks): `received` keeps each request's size and whether it streamed, not
    its body, so large requests do not pile up in memory."""
    files: dict[str, FakeFile] = field(default_factory=dict)
    """The files held now, by id."""
    uploads: list[FakeFile] = field(default_factory=list)
    """Every file uploaded, in order."""
    deleted: list[str] = field(default_factory=list)
    """The file ids deleted through the API, in order."""
    base_url: str = ""
    root_url: str = ""

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request body received, in order."""
        return [request.body for request in self.received]

    def streamed(self) -> list[Received]:
        """The streamed (answer) requests; titles are asked for without streaming."""
        return [request for request in self.received if request.body.get("stream")]

    def forget(self, file_id: str) -> None:
        """Drop a file without a request, as the provider's expiry would."""
        del self.files[file_id]

    def sizes(self) -> list[dict[str, Any]]:
        """Each model request's path, body size and whether it streamed, in order."""
        return [
            {"path": r.path, "size": r.size, "stream": bool(r.body.get("stream"))}
            for r in self.received
        ]

    def paths(self) -> dict[str, int]:
        """How many requests each path received."""
        return dict(Counter(request.path for request in self.received))

    def app(self) -> Starlette:
        """The ASGI app: the APIs' routes, `/health` for process supervisors, and `/requests`
        (requests per path, for a benchmark to check which API it measured)."""
        routes = [
            Route("/health", lambda _: JSONResponse({"status": "ok"})),
            Route("/requests", lambda _: JSONResponse(self.paths())),
            Route("/received", lambda _: JSONResponse(self.sizes())),
        ]
        if "responses" in self.apis:
            routes += [
                Route(path, self._handler(self._responses), methods=["POST"])
                for path in ("/v1/responses", "/openai/responses")
            ]
        if "chat_completions" in self.apis:
            routes += [
                Route(path, self._handler(self._chat), methods=["POST"])
                for path in (
                    "/v1/chat/completions",
                    "/openai/deployments/{deployment}/chat/completions",
                )
            ]
        if "files" in self.apis:
            for root in ("/v1/files", "/openai/files"):
                routes += [
                    Route(root, self._upload, methods=["POST"]),
                    Route(root + "/{file_id}", self._file, methods=["GET", "DELETE"]),
                ]
        return Starlette(routes=routes)

    async def __aenter__(self) -> FakeOpenAI:
        self._server = serve(self.app())
        self.root_url = await self._server.__aenter__()
        self.base_url = f"{self.root_url}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.__aexit__(None, None, None)

    def answer_words(self) -> list[str]:
        return [f"word{n}" for n in range(self.tokens)]

    def _handler(self, answer: Callable[[dict[str, Any]], Response]) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            raw = await request.body()
            body = json.loads(raw)
            self.received.append(
                Received(
                    request.url.path,
                    dict(request.query_params),
                    dict(request.headers),
                    body if self.keep_bodies else {"stream": body.get("stream")},
                    len(raw),
                )
            )
            del raw
            if self.failure == "500":
                return _error(500, "server_error", "The server had an error.")
            if self.failure == "429":
                return _error(429, "rate_limit_exceeded", "Rate limit reached.")
            if self.models is not None and body.get("model") not in self.models:
                model = body.get("model")
                message = f"The model `{model}` does not exist or you do not have access to it."
                return _error(404, "model_not_found", message)
            for file_id in file_ids(body):
                if file_id not in self.files:
                    return _error(404, "invalid_request_error", f"No such File object: {file_id}")
            return answer(body)

        return handle

    # The Files API

    async def _upload(self, request: Request) -> Response:
        if self.refuse_uploads:
            return _error(400, "invalid_request_error", "This file type is not supported.")
        form = await request.form()
        upload, purpose = form.get("file"), form.get("purpose")
        if isinstance(upload, str) or upload is None or not isinstance(purpose, str):
            return _error(400, "invalid_request_error", "'file' and 'purpose' are required")
        data = await upload.read()
        file = FakeFile(
            id=f"file-{secrets.token_hex(12)}",
            filename=upload.filename or "upload",
            purpose=purpose,
            mime_type=upload.content_type or "application/octet-stream",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            data=data if len(data) <= KEPT_FILE_BYTES else None,
        )
        del data
        self.files[file.id] = file
        self.uploads.append(file)
        return JSONResponse(file.payload())

    async def _file(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        file = self.files.get(file_id)
        if file is None:
            return _error(404, "invalid_request_error", f"No such File object: {file_id}")
        if request.method == "DELETE":
            del self.files[file_id]
            self.deleted.append(file_id)
            return JSONResponse({"id": file_id, "object": "file", "deleted": True})
        return JSONResponse(file.payload())

    def _next_reply(self) -> FakeReply:
        return self.script.popleft() if self.script else FakeReply(" ".join(self.answer_words()))

    async def _words(self, text: str | None) -> AsyncIterator[str]:
        """The text's words as deltas, `delay` apart; cut the connection if asked to."""
        for count, word in enumerate((text or "").split()):
            if self.failure == "drop" and count >= self.drop_after:
                raise DroppedConnection
            await asyncio.sleep(self.delay)
            yield word if count == 0 else f" {word}"

    # The Responses API

    def _responses(self, body: dict[str, Any]) -> Response:
        if not body.get("stream"):
            output = [_message(_id("msg"), self.title)]
            return JSONResponse(self._response(body, output, "completed"))
        return StreamingResponse(self._responses_stream(body), media_type="text/event-stream")

    async def _responses_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        reply = self._next_reply()
        sequence = iter(range(10_000))

        def sse(event: dict[str, Any]) -> bytes:
            event["sequence_number"] = next(sequence)
            return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()

        yield sse({"type": "response.created", "response": self._response(body, [], "in_progress")})
        output: list[dict[str, Any]] = []
        if reply.text is not None:
            message_id = _id("msg")
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
            async for delta in self._words(reply.text):
                text += delta
                yield sse(
                    {"type": "response.output_text.delta", **where, "delta": delta, "logprobs": []}
                )
            yield sse({"type": "response.output_text.done", **where, "text": text, "logprobs": []})
            yield sse(
                {"type": "response.content_part.done", **where, "part": {**part, "text": text}}
            )
            output.append(_message(message_id, text))
            yield sse({"type": "response.output_item.done", "output_index": 0, "item": output[-1]})
        for name, arguments in reply.tool_calls:
            index, item_id, encoded = len(output), _id("fc"), json.dumps(arguments)
            call = {
                "id": item_id,
                "call_id": _id("call"),
                "type": "function_call",
                "name": name,
                "arguments": "",
                "status": "in_progress",
            }
            yield sse({"type": "response.output_item.added", "output_index": index, "item": call})
            where = {"item_id": item_id, "output_index": index}
            for piece in _thirds(encoded):
                yield sse(
                    {"type": "response.function_call_arguments.delta", **where, "delta": piece}
                )
            yield sse(
                {"type": "response.function_call_arguments.done", **where, "arguments": encoded}
            )
            output.append({**call, "arguments": encoded, "status": "completed"})
            yield sse(
                {"type": "response.output_item.done", "output_index": index, "item": output[-1]}
            )
        yield sse(
            {"type": "response.completed", "response": self._response(body, output, "completed")}
        )

    # Chat Completions

    def _chat(self, body: dict[str, Any]) -> Response:
        if not body.get("stream"):
            message = {"role": "assistant", "content": self.title, "refusal": None}
            choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
            completion = {
                **_chunk_head(body, "chat.completion"),
                "choices": [choice],
                "usage": self._chat_usage(self.title),
            }
            return JSONResponse(completion)
        return StreamingResponse(self._chat_stream(body), media_type="text/event-stream")

    async def _chat_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        reply = self._next_reply()
        head = _chunk_head(body, "chat.completion.chunk")

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            return f"data: {json.dumps({**head, 'choices': [choice], 'usage': None})}\n\n".encode()

        yield chunk({"role": "assistant", "content": ""})
        text = ""
        async for delta in self._words(reply.text):
            text += delta
            yield chunk({"content": delta})
        for index, (name, arguments) in enumerate(reply.tool_calls):
            opening = {"index": index, "id": _id("call"), "type": "function"}
            yield chunk({"tool_calls": [{**opening, "function": {"name": name, "arguments": ""}}]})
            for piece in _thirds(json.dumps(arguments)):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, "tool_calls" if reply.tool_calls else "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {**head, "choices": [], "usage": self._chat_usage(text, len(reply.tool_calls))}
            yield f"data: {json.dumps(usage)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    def _response(
        self, body: dict[str, Any], output: list[dict[str, Any]], status: str
    ) -> dict[str, Any]:
        texts = " ".join(
            part["text"] for item in output if item["type"] == "message" for part in item["content"]
        )
        calls = sum(item["type"] == "function_call" for item in output)
        tokens = output_tokens(texts, calls)
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
                "input_tokens": INPUT_TOKENS,
                "input_tokens_details": {"cached_tokens": self.cached_tokens},
                "output_tokens": tokens,
                "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
                "total_tokens": INPUT_TOKENS + tokens,
            },
        }

    def _chat_usage(self, text: str, tool_calls: int = 0) -> dict[str, Any]:
        tokens = output_tokens(text, tool_calls)
        return {
            "prompt_tokens": INPUT_TOKENS,
            "completion_tokens": tokens,
            "total_tokens": INPUT_TOKENS + tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


def last_tool_output(body: dict[str, Any]) -> str:
    """The tool output a request ends with, checked against the call it answers: a `tool`
    message after an assistant message with `tool_calls` (Chat Completions), or a
    `function_call_output` item after its `function_call` (Responses)."""
    if "messages" in body:
        *_, call, output = body["messages"]
        assert call["role"] == "assistant" and output["role"] == "tool"
        assert output["tool_call_id"] == call["tool_calls"][0]["id"]
        return str(output["content"])
    *_, call, output = body["input"]
    assert (call["type"], output["type"]) == ("function_call", "function_call_output")
    assert output["call_id"] == call["call_id"]
    return str(output["output"])


def file_ids(value: Any) -> list[str]:
    """Every `file_id` a request body names, in order."""
    if isinstance(value, list):
        return [found for item in value for found in file_ids(item)]
    if isinstance(value, dict):
        return [
            found
            for key, item in value.items()
            for found in ([item] if key == "file_id" and isinstance(item, str) else file_ids(item))
        ]
    return []


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _thirds(text: str) -> list[str]:
    """`text` in three pieces, as providers split a tool call's arguments across events."""
    cut = max(1, len(text) // 3)
    return [text[:cut], text[cut : 2 * cut], text[2 * cut :]]


def output_tokens(text: str, tool_calls: int = 0) -> int:
    """What this server reports as output tokens: a word each, and one per tool call."""
    return len(text.split()) + tool_calls


def _message(message_id: str, text: str) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _chunk_head(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return {
        "id": _id("chatcmpl"),
        "object": kind,
        "created": 1_700_000_000,
        "model": body.get("model", "unknown"),
        "system_fingerprint": None,
    }


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": code, "param": None, "code": code}},
        status_code=status,
    )
