"""Metrics at the HTTP edge: a pure ASGI middleware that counts `POST /chatkit`, and `/metrics`.

The middleware sits outside the edge checks, so it sees their refusals (429s among them), and
reads only what passes through it: the request type from the start of the body (no second parse
of the JSON), the status, and when the stream's first event and its end are sent.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import time
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app
from prometheus_client.multiprocess import MultiProcessCollector
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.asgi import is_protocol_request
from app.http.auth.base import Unauthenticated
from app.http.errors import refuse
from app.observability import metrics

TYPE_PATTERN = re.compile(rb'"type"\s*:\s*"([a-z_.]{1,64})"')
"""The request's `type`: the first one in the body, which clients send first (`{"type": ...`).
Another first `type` (a nested one) is not a request type and counts as `other`."""
PEEK_BYTES = 512
MAX_REFUSAL_BYTES = 4096
EVENT_STREAM = "text/event-stream"


@dataclass
class _Exchange:
    """What the middleware learned about one request so far."""

    started: float
    request_type: str = metrics.OTHER
    status: int | None = None
    streaming: bool = False
    first_event: bool = False
    ended: bool = False
    refusal: bytes = b""


@dataclass(frozen=True, slots=True)
class RequestMetricsMiddleware:
    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_protocol_request(scope):
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(started=time.perf_counter())
        peeked = False

        async def peek(message: Message) -> Message:
            nonlocal peeked
            if not peeked and message["type"] == "http.request":
                peeked = True
                found = TYPE_PATTERN.search(message.get("body", b"")[:PEEK_BYTES])
                exchange.request_type = metrics.request_type_label(
                    found[1].decode() if found else None
                )
            return message

        async def receive_peeking() -> Message:
            return await peek(await receive())

        async def send_counting(message: Message) -> None:
            _observe(exchange, message)
            await send(message)

        try:
            await self.app(scope, receive_peeking, send_counting)
        finally:
            _finish(exchange)


def _observe(exchange: _Exchange, message: Message) -> None:
    if message["type"] == "http.response.start":
        exchange.status = status = message["status"]
        content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
        exchange.streaming = content_type.startswith(EVENT_STREAM)
        metrics.REQUESTS.labels(exchange.request_type, str(status)).inc()
        if exchange.streaming:
            metrics.OPEN_STREAMS.inc()
    elif message["type"] == "http.response.body":
        body: bytes = message.get("body", b"")
        if exchange.streaming and body and not exchange.first_event:
            exchange.first_event = True
            elapsed = time.perf_counter() - exchange.started
            metrics.TIME_TO_FIRST_EVENT.labels(exchange.request_type).observe(elapsed)
        if exchange.status == 429 and len(exchange.refusal) < MAX_REFUSAL_BYTES:
            exchange.refusal += body
        if not message.get("more_body", False):
            _finish(exchange)


def _finish(exchange: _Exchange) -> None:
    """Once per request: the end of a stream (complete, or cut off), or a refusal."""
    if exchange.ended:
        return
    exchange.ended = True
    if exchange.status is None:  # the application failed before it answered
        metrics.REQUESTS.labels(exchange.request_type, "500").inc()
    if exchange.streaming:
        metrics.OPEN_STREAMS.dec()
        elapsed = time.perf_counter() - exchange.started
        metrics.TURN_DURATION.labels(exchange.request_type).observe(elapsed)
    if exchange.status == 429:
        metrics.RATE_LIMIT_REFUSALS.labels(
            exchange.request_type, metrics.refusal_reason_label(_error_code(exchange.refusal))
        ).inc()


def _error_code(body: bytes) -> object:
    """The `error` code of a JSON error body (`app/http/errors.py`), if that is what it is."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed.get("error") if isinstance(parsed, dict) else None


class MetricsUnauthorized(Unauthenticated):
    def __init__(self) -> None:
        super().__init__("GET /metrics needs the METRICS_TOKEN bearer token.")


def scrape_registry() -> CollectorRegistry:
    """The process's own metrics, or, with `PROMETHEUS_MULTIPROC_DIR`, every worker's."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


@dataclass(frozen=True, slots=True)
class MetricsEndpoint:
    """`GET /metrics`: `prometheus_client`'s ASGI app behind a bearer token, if one is set."""

    token: SecretStr | None
    serve: ASGIApp

    @classmethod
    def build(cls, token: SecretStr | None) -> MetricsEndpoint:
        return cls(token, make_asgi_app(scrape_registry()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is not None and not self._authorized(scope, self.token):
            await refuse(MetricsUnauthorized(), scope, receive, send)
            return
        await self.serve(scope, receive, send)

    @staticmethod
    def _authorized(scope: Scope, token: SecretStr) -> bool:
        scheme, _, sent = Headers(scope=scope).get("authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        return scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), expected)
