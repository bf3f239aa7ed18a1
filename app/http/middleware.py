"""Pure ASGI edge checks that run before identity: header sizes, domain keys, the body limit."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.http.asgi import (
    BodyTooLarge,
    is_guarded,
    is_protocol_request,
    read_body,
    replay,
    send_error,
)

MAX_HEADER_BYTES = 8 * 1024
"""The largest single header (name and value), as nginx's default buffers allow."""
MAX_HEADERS_BYTES = 32 * 1024
"""The largest set of request headers in all."""


class HeaderLimitMiddleware:
    """Refuses requests whose headers are too large with a 431, before anything reads them.

    uvicorn's default HTTP parser sets no limit of its own (a 1.3 MB token was accepted), and
    every later step (token verification, logs) would work on whatever arrived.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (problem := _header_problem(scope["headers"])):
            await send_error(send, 431, "headers_too_large", problem)
            return
        await self.app(scope, receive, send)


def _header_problem(headers: list[tuple[bytes, bytes]]) -> str | None:
    total = 0
    for name, value in headers:
        size = len(name) + len(value)
        if size > MAX_HEADER_BYTES:
            shown = name.decode("latin-1")[:40]
            return f"The {shown} header is larger than {MAX_HEADER_BYTES} bytes."
        total += size
    if total > MAX_HEADERS_BYTES:
        return f"The request headers are larger than {MAX_HEADERS_BYTES} bytes in all."
    return None


class DomainKeyMiddleware:
    """With `CHATKIT_DOMAIN_KEYS` set, `/chatkit` needs one of them (header or `?domain_key=`)."""

    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.keys and is_guarded(scope) and not self._allowed(scope):
            await send_error(
                send,
                403,
                "domain_key_required",
                "This server needs a registered domain key: send it in X-ChatKit-Domain-Key.",
            )
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        sent = Headers(scope=scope).get("x-chatkit-domain-key")
        if sent is None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            sent = (query.get("domain_key") or [None])[0]
        if not sent:
            return False
        candidate = sent.encode()
        # Compare with every key (no early exit), in constant time per key.
        return sum(hmac.compare_digest(candidate, key) for key in self.keys) > 0


class BodyLimitMiddleware:
    """Caps `POST /chatkit` bodies at `CHATKIT_MAX_BODY_BYTES` with a 413.

    A declared `Content-Length` is checked up front; a streamed (chunked) body is counted as it
    arrives and refused as soon as it passes the limit. The route reads the whole body anyway, so
    reading it here first costs nothing and lets the refusal happen before anything else runs.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_protocol_request(scope):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        try:
            body = await read_body(receive, self.max_bytes)
        except BodyTooLarge:
            await self._refuse(send)
            return
        await self.app(scope, replay(body, receive), send)

    async def _refuse(self, send: Send) -> None:
        await send_error(
            send,
            413,
            "body_too_large",
            f"The request body is larger than {self.max_bytes} bytes (CHATKIT_MAX_BODY_BYTES).",
        )
