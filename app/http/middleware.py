"""Pure ASGI edge checks: header sizes, domain keys, the body limit (before identity), and the
database schema (after it)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import AppError, PayloadTooLarge
from app.http.asgi import (
    BodyTooLarge,
    is_guarded,
    is_protocol_request,
    is_under_chatkit,
    read_body,
    replay,
)
from app.http.errors import refuse
from app.store.errors import DatabaseUnavailable, is_outage
from app.store.schema import Schema

MAX_HEADER_BYTES = 8 * 1024
"""The largest single header (name and value), as nginx's default buffers allow."""
MAX_HEADERS_BYTES = 32 * 1024
"""The largest set of request headers in all."""


class HeadersTooLarge(AppError):
    status, code = 431, "headers_too_large"


class DomainKeyRequired(AppError):
    status, code = 403, "domain_key_required"

    def __init__(self) -> None:
        super().__init__(
            "This server needs a registered domain key: send it in X-ChatKit-Domain-Key."
        )


class RequestBodyTooLarge(PayloadTooLarge):
    code = "body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than {limit} bytes (CHATKIT_MAX_BODY_BYTES).")


@dataclass(frozen=True, slots=True)
class HeaderLimitMiddleware:
    """Refuses requests whose headers are too large with a 431, before anything reads them.

    uvicorn's default HTTP parser sets no limit of its own (a 1.3 MB token was accepted), and
    every later step (token verification, logs) would work on whatever arrived.
    """

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (problem := _header_problem(scope["headers"])):
            await refuse(HeadersTooLarge(problem), scope, receive, send)
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
            await refuse(DomainKeyRequired(), scope, receive, send)
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


@dataclass(frozen=True, slots=True)
class BodyLimitMiddleware:
    """Caps `POST /chatkit` bodies at `CHATKIT_MAX_BODY_BYTES` with a 413.

    A declared `Content-Length` is checked up front; a streamed (chunked) body is counted as it
    arrives and refused as soon as it passes the limit. The route reads the whole body anyway, so
    reading it here first costs nothing and lets the refusal happen before anything else runs.
    """

    app: ASGIApp
    max_bytes: int

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_protocol_request(scope):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        try:
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                raise BodyTooLarge
            body = await read_body(receive, self.max_bytes)
        except BodyTooLarge:
            await refuse(RequestBodyTooLarge(self.max_bytes), scope, receive, send)
            return
        await self.app(scope, replay(body, receive), send)


@dataclass(frozen=True, slots=True)
class SchemaMiddleware:
    """`/chatkit` on a database not at head: a 503 naming `alembic upgrade head`, not a 500."""

    app: ASGIApp
    schema: Schema

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_under_chatkit(scope):
            try:
                await self.schema.check()
            except AppError as exc:
                await refuse(exc, scope, receive, send)
                return
            except Exception as exc:
                if not is_outage(exc):
                    raise
                await refuse(DatabaseUnavailable(), scope, receive, send)
                return
        await self.app(scope, receive, send)
