"""The ChatKit protocol over HTTP, spoken as any ChatKit client speaks it; no terminal here.

Requests are the SDK's own wire models (`chatkit.types`), posted as JSON to the protocol URL.
Streaming requests answer server-sent events, parsed with `httpx-sse` (ids, event names,
multi-line data, `: keep-alive` comments) and validated into `ThreadStreamEvent`s; the others
answer JSON. Every failure is a `ChatKitError`, with the server's own `message` when it sent one.

Each event's SSE `id:` is kept in `last_event_id`: when a stream's connection drops mid-turn,
the client re-attaches (`GET {url}/threads/{thread_id}/stream?after=...`, a few tries with a
growing pause) and the caller reads on, missing nothing and seeing nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx
from chatkit.types import (
    Attachment,
    AttachmentCreateParams,
    AttachmentsCreateReq,
    InferenceOptions,
    ItemsListParams,
    ItemsListReq,
    NonStreamingReq,
    Page,
    StreamingReq,
    Thread,
    ThreadAddClientToolOutputParams,
    ThreadAddUserMessageParams,
    ThreadCreatedEvent,
    ThreadCreateParams,
    ThreadGetByIdParams,
    ThreadItem,
    ThreadListParams,
    ThreadMetadata,
    ThreadRetryAfterItemParams,
    ThreadsAddClientToolOutputReq,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsGetByIdReq,
    ThreadsListReq,
    ThreadsRetryAfterItemReq,
    ThreadStreamEvent,
    UserMessageInput,
    UserMessageTextContent,
)
from httpx_sse import EventSource, SSEError
from pydantic import TypeAdapter, ValidationError

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000/chatkit"
REATTACH_PAUSES = (0.5, 1.0, 2.0, 4.0)
"""Seconds to wait before each try to re-attach to a turn whose stream dropped."""
TIMEOUT = httpx.Timeout(30.0, read=None)
"""Streams may stay quiet for a long time (a slow model, a tool): no read timeout."""

T = TypeVar("T")
EVENTS: TypeAdapter[ThreadStreamEvent] = TypeAdapter(ThreadStreamEvent)
ATTACHMENT: TypeAdapter[Attachment] = TypeAdapter(Attachment)


class ChatKitError(Exception):
    """Anything that stops a request: the server refused it, or it could not be made."""


class HTTPError(ChatKitError):
    """The server answered with an error status; `code` and `message` come from its JSON body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def from_response(cls, response: httpx.Response) -> HTTPError:
        """Read `{"error": code, "message": reason}`; a body that is not ours is quoted briefly."""
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return cls(response.status_code, str(body.get("error", "error")), body["message"])
        text = response.text.strip()[:200] or response.reason_phrase
        return cls(response.status_code, "error", text)


class ConnectionFailed(ChatKitError):
    """The server could not be reached, or the connection broke mid-stream."""

    @classmethod
    def of(cls, url: str, exc: httpx.TransportError) -> ConnectionFailed:
        reason = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return cls(f"Could not reach {url}: {reason}")
        return cls(f"The connection to {url} broke: {reason}")


class ChatKitClient:
    """One user's session with a ChatKit server at `url` (the protocol route, e.g. `.../chatkit`).

    Identity is a bearer `token`, or `user` sent as `X-User-Id` to servers that trust that
    header. `transport` lets tests and embedders route requests (e.g. `httpx.ASGITransport`).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        user: str | None = None,
        domain_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        sent: dict[str, str] = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if user:
            sent["X-User-Id"] = user
        if domain_key:
            sent["X-ChatKit-Domain-Key"] = domain_key
        self.http = httpx.AsyncClient(headers=sent, transport=transport, timeout=TIMEOUT)
        # Uploads go to signed URLs: no identity headers, as a browser sends them.
        self.uploads = httpx.AsyncClient(transport=transport, timeout=TIMEOUT)
        self.last_event_id: str | None = None
        """The SSE id of the newest event received (None until the server sends ids)."""

    async def __aenter__(self) -> ChatKitClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.uploads.aclose()

    # Streaming requests: each yields the thread's events as they arrive.

    def create_thread(
        self, text: str, attachments: list[str] | None = None
    ) -> AsyncIterator[ThreadStreamEvent]:
        params = ThreadCreateParams(input=user_input(text, attachments))
        return self.stream(ThreadsCreateReq(params=params))

    def add_user_message(
        self, thread_id: str, text: str, attachments: list[str] | None = None
    ) -> AsyncIterator[ThreadStreamEvent]:
        params = ThreadAddUserMessageParams(
            thread_id=thread_id, input=user_input(text, attachments)
        )
        return self.stream(ThreadsAddUserMessageReq(params=params))

    def add_client_tool_output(
        self, thread_id: str, result: Any
    ) -> AsyncIterator[ThreadStreamEvent]:
        params = ThreadAddClientToolOutputParams(thread_id=thread_id, result=result)
        return self.stream(ThreadsAddClientToolOutputReq(params=params))

    def retry_after_item(self, thread_id: str, item_id: str) -> AsyncIterator[ThreadStreamEvent]:
        params = ThreadRetryAfterItemParams(thread_id=thread_id, item_id=item_id)
        return self.stream(ThreadsRetryAfterItemReq(params=params))

    async def stream(self, request: StreamingReq) -> AsyncIterator[ThreadStreamEvent]:
        """Post a streaming request and yield its events; an error status raises `HTTPError`.

        A connection that drops once events have come is re-attached to the turn (which goes on
        on the server): the rest of its events follow as if nothing happened.
        """
        self.last_event_id = None
        thread_id: str | None = getattr(request.params, "thread_id", None)
        try:
            async with self.http.stream(
                "POST",
                self.url,
                content=request.model_dump_json(),
                headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise HTTPError.from_response(response)
                async for event in self._events(response):
                    if isinstance(event, ThreadCreatedEvent):
                        thread_id = event.thread.id
                    yield event
                return
        except httpx.TransportError as exc:
            if thread_id is None or self.last_event_id is None:
                raise ConnectionFailed.of(self.url, exc) from exc
            logger.info("The stream dropped (%s); re-attaching", type(exc).__name__)
        async for event in self.reattach(thread_id):
            yield event

    async def reattach(self, thread_id: str) -> AsyncIterator[ThreadStreamEvent]:
        """The rest of the thread's running turn after `last_event_id`, live to its end.

        Tries again, after each of `REATTACH_PAUSES`, while the connection fails; a turn that
        ended meanwhile yields nothing (the thread holds its answer).
        """
        url = f"{self.url}/threads/{thread_id}/stream"
        failure: httpx.TransportError | None = None
        for pause in REATTACH_PAUSES:
            await asyncio.sleep(pause)
            params = {"after": self.last_event_id} if self.last_event_id else {}
            try:
                async with self.http.stream(
                    "GET", url, params=params, headers={"Accept": "text/event-stream"}
                ) as response:
                    if response.is_error:
                        await response.aread()
                        raise HTTPError.from_response(response)
                    async for event in self._events(response):
                        yield event
                    return
            except httpx.TransportError as exc:
                failure = exc
        assert failure is not None
        raise ConnectionFailed.of(url, failure) from failure

    async def _events(self, response: httpx.Response) -> AsyncIterator[ThreadStreamEvent]:
        """The events of an SSE response; comments and id-only messages are skipped."""
        try:
            async for message in EventSource(response).aiter_sse():
                if message.id:
                    self.last_event_id = message.id
                if not message.data:
                    continue
                event = parse_event(message.data)
                if event is not None:
                    yield event
        except SSEError as exc:
            raise ChatKitError(f"{self.url} did not answer with an event stream: {exc}") from exc

    async def stop(self, thread_id: str) -> bool:
        """Stop the thread's running turn (its partial answer is kept); false if none ran.

        Closing a stream no longer stops its turn on a server that finishes answers in the
        background (`ON_DISCONNECT=finish`).
        """
        url = f"{self.url}/threads/{thread_id}/stream"
        try:
            response = await self.http.delete(url)
        except httpx.TransportError as exc:
            raise ConnectionFailed.of(url, exc) from exc
        if response.is_error:
            raise HTTPError.from_response(response)
        return bool(response.json().get("stopped"))

    # Plain requests: each returns the parsed JSON answer.

    async def list_threads(self, limit: int = 20, after: str | None = None) -> Page[ThreadMetadata]:
        """The user's threads, newest first."""
        request = ThreadsListReq(params=ThreadListParams(limit=limit, after=after, order="desc"))
        return await self.request(request, Page[ThreadMetadata])

    async def get_thread(self, thread_id: str) -> Thread:
        request = ThreadsGetByIdReq(params=ThreadGetByIdParams(thread_id=thread_id))
        return await self.request(request, Thread)

    async def list_items(
        self,
        thread_id: str,
        limit: int = 20,
        after: str | None = None,
        order: Literal["asc", "desc"] = "desc",
    ) -> Page[ThreadItem]:
        params = ItemsListParams(thread_id=thread_id, limit=limit, after=after, order=order)
        return await self.request(ItemsListReq(params=params), Page[ThreadItem])

    async def upload(self, path: Path, mime_type: str | None = None) -> Attachment:
        """Two-phase upload: `attachments.create`, then the file to the signed URL it returns."""
        data = await asyncio.to_thread(read_file, path)
        mime_type = mime_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        params = AttachmentCreateParams(name=path.name, size=len(data), mime_type=mime_type)
        attachment = await self.request(AttachmentsCreateReq(params=params), ATTACHMENT)
        descriptor = attachment.upload_descriptor
        if descriptor is None:  # the server already has the bytes
            return attachment
        if descriptor.method != "POST":
            raise ChatKitError(f"Unsupported upload method {descriptor.method} (only POST)")
        try:
            response = await self.uploads.post(
                str(descriptor.url),
                headers=descriptor.headers,
                files={"file": (path.name, data, mime_type)},
            )
        except httpx.TransportError as exc:
            raise ConnectionFailed.of(str(descriptor.url).split("?")[0], exc) from exc
        if response.is_error:
            raise HTTPError.from_response(response)
        return ATTACHMENT.validate_json(response.content)

    async def request(self, request: NonStreamingReq, answer: type[T] | TypeAdapter[T]) -> T:
        """Post a plain request and parse its JSON answer as `answer`."""
        try:
            response = await self.http.post(
                self.url,
                content=request.model_dump_json(),
                headers={"Content-Type": "application/json"},
            )
        except httpx.TransportError as exc:
            raise ConnectionFailed.of(self.url, exc) from exc
        if response.is_error:
            raise HTTPError.from_response(response)
        adapter = answer if isinstance(answer, TypeAdapter) else TypeAdapter(answer)
        try:
            return adapter.validate_json(response.content)
        except ValidationError as exc:
            raise ChatKitError(f"Unexpected answer to {request.type}: {exc}") from exc


def read_file(path: Path) -> bytes:
    return path.expanduser().read_bytes()


def user_input(text: str, attachments: list[str] | None = None) -> UserMessageInput:
    return UserMessageInput(
        content=[UserMessageTextContent(text=text)],
        attachments=attachments or [],
        inference_options=InferenceOptions(),
    )


def parse_event(data: str) -> ThreadStreamEvent | None:
    """One event's JSON as a `ThreadStreamEvent`; None for a kind this SDK version does not know.

    A newer server may send new event or item types: skipping them keeps the client working.
    An event of a known kind that does not validate is a real error.
    """
    try:
        return EVENTS.validate_json(data)
    except ValidationError as exc:
        if all(error["type"] == "union_tag_invalid" for error in exc.errors()):
            logger.debug("Skipped an event of an unknown kind: %.200s", data)
            return None
        raise ChatKitError(f"Unreadable event from the server: {exc}") from exc
