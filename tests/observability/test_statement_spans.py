"""Statements that run on asyncpg directly get the spans SQLAlchemy's instrumentation would have
made (`app/observability/statement_spans.py`), so a sampled request keeps them on the driver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.context import detach
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import event, literal_column, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.observability.tracing import Tracing, without_spans
from app.store.db import Prepared, SingleStatements, Statement

ONLY_SQLALCHEMY = frozenset({"httpx", "httpx2", "openai_agents", "fastapi"})


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(postgres_url, pool_size=2, max_overflow=0)
    yield engine
    await engine.dispose()


@pytest.fixture
async def traced(engine: AsyncEngine) -> AsyncIterator[InMemorySpanExporter]:
    """SQLAlchemy's instrumentation on `engine`, as the served app installs it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider, disabled=ONLY_SQLALCHEMY)
    tracing.start(engine)
    yield exporter
    await tracing.shutdown()


def driver_calls(single: SingleStatements, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements `single` runs on the driver from now on."""
    calls: list[str] = []
    run_on_driver = single._run_on_driver

    async def noted(prepared: Prepared, *args: Any) -> Any:
        calls.append(str(prepared.sql))
        return await run_on_driver(prepared, *args)

    monkeypatch.setattr(single, "_run_on_driver", noted)
    return calls


def described(span: ReadableSpan) -> tuple[Any, ...]:
    scope = span.instrumentation_scope
    return span.name, span.kind, dict(span.attributes or {}), scope and scope.name


async def test_a_traced_statement_stays_on_the_driver_with_the_span_sqlalchemy_would_make(
    engine: AsyncEngine, traced: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = SingleStatements(engine)
    on_driver = driver_calls(single, monkeypatch)
    probe = single.prepare(select(literal_column("'probe'").label("probe")))
    assert [dict(row) for row in await single.rows(probe, {})] == [{"probe": "probe"}]
    assert on_driver == [probe.sql]
    [driver_span] = traced.get_finished_spans()
    traced.clear()
    async with engine.connect() as conn:  # the same SQL, through SQLAlchemy
        await conn.execute(text(str(probe.sql)))
    [sqlalchemy_span] = traced.get_finished_spans()
    assert described(driver_span) == described(sqlalchemy_span)
    assert driver_span.name == "SELECT" and driver_span.kind == SpanKind.CLIENT
    assert (driver_span.attributes or {})["db.statement"] == probe.sql


async def test_a_failed_statement_s_span_says_so(
    engine: AsyncEngine, traced: InMemorySpanExporter
) -> None:
    single = SingleStatements(engine)
    failing: Statement = select(literal_column("1 / 0").label("never"))
    with pytest.raises(DBAPIError, match="division by zero"):
        await single.rows(single.prepare(failing), {})
    [span] = traced.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert "division by zero" in str(span.status.description)


async def test_another_listener_still_takes_statements_through_sqlalchemy_once(
    engine: AsyncEngine, traced: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listener other than the tracing's sees every statement, and each is spanned once."""
    single = SingleStatements(engine)
    on_driver = driver_calls(single, monkeypatch)
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    probe = single.prepare(select(literal_column("'probe'").label("probe")))
    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        await single.rows(probe, {})
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)
    assert (on_driver, seen) == ([], [probe.sql])
    assert [span.name for span in traced.get_finished_spans()] == ["SELECT"]


async def test_no_span_where_spans_are_suppressed_nor_once_tracing_stops(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider, disabled=ONLY_SQLALCHEMY)
    tracing.start(engine)
    single = SingleStatements(engine)
    on_driver = driver_calls(single, monkeypatch)
    probe = single.prepare(select(literal_column("'probe'").label("probe")))
    token = without_spans()  # a request that was not sampled
    try:
        await single.rows(probe, {})
    finally:
        detach(token)
    assert exporter.get_finished_spans() == ()
    await single.rows(probe, {})
    assert len(exporter.get_finished_spans()) == 1
    await tracing.shutdown()
    await single.rows(probe, {})
    assert len(exporter.get_finished_spans()) == 1
    assert len(on_driver) == 3
