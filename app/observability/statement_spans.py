"""Spans for the statements that run on asyncpg directly (`SingleStatements`, app/store/db.py).

SQLAlchemy's instrumentation sees only what SQLAlchemy executes. The statements every turn
runs skip SQLAlchemy's execution layer, so a sampled request used to send them back through
it, for their spans: a sampled turn then cost 10 % more CPU, most of it SQLAlchemy's
execution, not the spans. These spans are made the instrumentation's way instead (its scope,
name, kind and attributes), around the driver's call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.db import trace_driver_statements

SCOPE = "opentelemetry.instrumentation.sqlalchemy"
"""The instrumentation scope of SQLAlchemy's own spans: a backend groups both alike."""


@dataclass(frozen=True, slots=True)
class DriverStatementSpans:
    tracer: Tracer
    attributes: Mapping[str, AttributeValue]
    """The connection's, as the instrumentation reads them from the engine's URL."""
    listeners: int
    """How many of the engine's `before_cursor_execute` listeners are the instrumentation's."""

    @contextmanager
    def __call__(self, sql: str) -> Iterator[None]:
        operation = sql.split(None, 1)[0] if sql.strip() else "postgresql"
        attributes = {**self.attributes, "db.statement": sql, "db.operation": operation}
        span = self.tracer.start_span(operation, kind=SpanKind.CLIENT, attributes=attributes)
        try:
            yield
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        finally:
            span.end()


def trace_statements_on_driver(
    engine: AsyncEngine, provider: TracerProvider, listeners: int
) -> None:
    """Span the engine's driver-run statements; `listeners`: those SQLAlchemy's instrumentation
    added to the engine, which are then no reason to leave the driver."""
    url = engine.url
    attributes: dict[str, AttributeValue] = {}
    if url.host:
        attributes["net.peer.name"] = url.host
    if url.port:
        attributes["net.peer.port"] = url.port
    if url.database:
        attributes["db.name"] = url.database
    if url.username:
        attributes["db.user"] = url.username
    attributes["db.system"] = "postgresql"
    tracer = provider.get_tracer(SCOPE)
    trace_driver_statements(engine, DriverStatementSpans(tracer, attributes, listeners))
