"""The statements every turn runs, on asyncpg directly (`SingleStatements.prepare`): the same
rows as through SQLAlchemy, and the same care for the pool when a statement fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from chatkit.types import ThreadMetadata
from opentelemetry.context import detach
from prometheus_client import REGISTRY
from sqlalchemy import bindparam, delete, event, insert, literal_column, select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.observability.agent_metrics import count_connections
from app.observability.tracing import without_spans
from app.store.db import Prepared, SingleStatements, Statement, create_engine, utcnow
from app.store.errors import is_outage
from app.store.models import TaskRow, UsageCounterRow
from app.store.store import THREAD, SQLAlchemyStore
from app.store.tokens import TokenCounts, TokenUsageStore
from tests.conftest import make_settings, new_user
from tests.helpers.items import every_item_type

SLEEP: Statement = select(literal_column("pg_sleep(3)").label("slept"))


@pytest.fixture
async def one_connection(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """A pool of exactly one connection: whether a statement kept it or discarded it shows
    in the backend that serves the next one."""
    engine = create_async_engine(postgres_url, pool_size=1, max_overflow=0)
    yield engine
    await engine.dispose()


async def backend_pid(single: SingleStatements) -> int:
    statement: Statement = select(literal_column("pg_backend_pid()").label("pid"))
    [row] = await single.rows(single.prepare(statement), {})
    return int(row["pid"])


async def terminate(postgres_url: str, pid: int) -> None:
    admin = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def test_postgres_runs_them_on_the_driver_and_the_others_through_sqlalchemy(
    postgres_url: str, sqlite_url: str
) -> None:
    for settings, direct in (
        (make_settings(postgres_url), True),
        (make_settings(sqlite_url), False),
        (make_settings(postgres_url, database_pgbouncer=True), False),
    ):
        engine = create_engine(settings)
        single = SingleStatements(engine)
        assert single.direct is direct
        assert (single.prepare(THREAD).sql is not None) is direct
        await engine.dispose()


async def test_the_driver_returns_what_sqlalchemy_returns(one_connection) -> None:
    store, caller = SQLAlchemyStore(one_connection), new_user()
    thread = ThreadMetadata(id=store.generate_thread_id(caller), created_at=datetime.now())
    await store.save_thread(thread, caller)
    items = every_item_type(thread.id)
    for item in items:  # every kind of item, sent as JSON on the driver
        await store.add_thread_item(thread.id, item, caller)
    page = await store.load_thread_items(thread.id, None, 100, "asc", caller)
    assert page.data == items
    single = SingleStatements(one_connection)
    params = {"p_thread": thread.id, "p_user": caller.user_id, "p_now": utcnow()}
    direct = await single.rows(single.prepare(THREAD), params)
    through_sqlalchemy = await single.rows(Prepared(THREAD), params)
    assert [dict(row) for row in direct] == [dict(row) for row in through_sqlalchemy]
    [row] = direct
    assert row["data"]["id"] == thread.id and row["lock"] is None  # JSON decoded, as before


async def test_timestamps_and_counts_are_sent_as_sqlalchemy_sends_them(one_connection) -> None:
    single = SingleStatements(one_connection)
    insert_row = single.prepare(
        insert(UsageCounterRow), ["user_id", "bucket", "window_start", "count"]
    )
    at = datetime(2026, 1, 2, 3, 4, 5)
    row = {"user_id": new_user().user_id, "bucket": "direct", "window_start": at, "count": 7}
    assert await single.rowcount(insert_row, row) == 1
    read = select(UsageCounterRow.window_start, UsageCounterRow.count).where(
        UsageCounterRow.user_id == bindparam("p_user")
    )
    assert [dict(r) for r in await single.rows(Prepared(read), {"p_user": row["user_id"]})] == [
        {"window_start": at, "count": 7}
    ]
    gone = delete(UsageCounterRow).where(UsageCounterRow.user_id == bindparam("p_user"))
    assert await single.rowcount(single.prepare(gone), {"p_user": row["user_id"]}) == 1
    assert await single.rowcount(single.prepare(gone), {"p_user": row["user_id"]}) == 0


async def test_what_sqlalchemy_completes_per_call_is_refused(one_connection) -> None:
    """Python-side defaults, values computed per call, lists expanded into the SQL: the work of
    SQLAlchemy's execution, which the driver skips."""
    single = SingleStatements(one_connection)
    with pytest.raises(ValueError, match="defaults"):
        single.prepare(insert(TaskRow), ["id", "user_id", "title"])  # `done` has one
    with pytest.raises(ValueError, match="per call"):
        single.prepare(select(TaskRow.id).where(TaskRow.id.in_(bindparam("ids", expanding=True))))
    with pytest.raises(ValueError, match="per call"):
        single.prepare(
            select(TaskRow.id).where(TaskRow.created_at < bindparam("t", callable_=utcnow))
        )


async def test_after_a_restart_no_request_fails_on_a_connection_known_dead(postgres_url) -> None:
    """Every pooled session ended (a restart): asyncpg has seen each close, and none is used."""
    engine = create_async_engine(postgres_url, pool_size=3, max_overflow=0)
    single = SingleStatements(engine)
    try:
        pids = set(await asyncio.gather(*(held_pid(engine) for _ in range(3))))
        assert len(pids) == 3
        for pid in pids:
            await terminate(postgres_url, pid)
        await asyncio.sleep(0.5)  # the sessions' ends reach the idle connections
        after = [await backend_pid(single) for _ in range(3)]
        assert not pids & set(after)
    finally:
        await engine.dispose()


async def held_pid(engine: AsyncEngine) -> int:
    """A session's pid, its connection held a moment so that others are checked out too."""
    async with engine.connect() as conn:
        pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        await asyncio.sleep(0.2)
    return int(pid)


async def test_a_failing_usage_row_reads_as_sqlalchemy_error(one_connection) -> None:
    """`UsageRecorder` logs a failed write (a `SQLAlchemyError`) instead of failing the turn."""
    tokens = TokenUsageStore(one_connection)
    with pytest.raises(SQLAlchemyError):  # the model's name is longer than its column
        await tokens.record(new_user().user_id, "thr_x", None, "m" * 300, TokenCounts(1), utcnow())


async def test_an_error_the_server_answers_keeps_the_connection(one_connection) -> None:
    single = SingleStatements(one_connection)
    before = await backend_pid(single)
    bad = select(text("1 / 0"))
    with pytest.raises(DBAPIError) as caught:  # as through SQLAlchemy, the driver's inside
        await single.rows(single.prepare(bad), {})
    assert isinstance(caught.value.orig, asyncpg.DivisionByZeroError)
    assert not is_outage(caught.value) and not caught.value.connection_invalidated
    assert await backend_pid(single) == before


async def test_a_broken_connection_is_an_outage_and_is_discarded(
    one_connection, postgres_url: str
) -> None:
    single = SingleStatements(one_connection)
    before = await backend_pid(single)
    sleeping = single.prepare(SLEEP)
    with pytest.raises(DBAPIError) as caught:  # mid-statement: the server ends the session
        await asyncio.gather(single.rows(sleeping, {}), terminate(postgres_url, before))
    assert caught.value.connection_invalidated and is_outage(caught.value)
    assert await backend_pid(single) != before  # a new session, not the dead one


async def test_a_statement_cancelled_midway_discards_its_connection(one_connection) -> None:
    """Its session may still be running the statement: the pool must not hand it out again."""
    single = SingleStatements(one_connection)
    before = await backend_pid(single)
    sleeping = asyncio.create_task(single.rows(single.prepare(SLEEP), {}))
    await asyncio.sleep(0.3)
    sleeping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeping
    assert await backend_pid(single) != before


async def test_statements_someone_listens_to_run_through_sqlalchemy(
    one_connection, monkeypatch
) -> None:
    """A listener on the engine's statements (a test counting them) sees every statement; where
    nothing listens, or spans are suppressed (a request not sampled), the statement runs on the
    driver. (The SQLAlchemy tracing's own listeners keep it there: test_statement_spans.py.)"""
    seen: list[str] = []
    on_driver: list[str] = []
    single = SingleStatements(one_connection)
    run_on_driver = single._run_on_driver

    async def noted(prepared: Prepared, *args: Any) -> Any:
        on_driver.append(str(prepared.sql))
        return await run_on_driver(prepared, *args)

    monkeypatch.setattr(single, "_run_on_driver", noted)

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    probe = single.prepare(select(literal_column("'probe'").label("probe")))
    assert [dict(row) for row in await single.rows(probe, {})] == [{"probe": "probe"}]
    assert (len(on_driver), len(seen)) == (1, 0)
    event.listen(one_connection.sync_engine, "before_cursor_execute", note)
    try:
        assert [dict(row) for row in await single.rows(probe, {})] == [{"probe": "probe"}]
        assert (len(on_driver), len(seen)) == (1, 1)
        token = without_spans()
        try:
            await single.rows(probe, {})
        finally:
            detach(token)
        assert (len(on_driver), len(seen)) == (2, 1)
    finally:
        event.remove(one_connection.sync_engine, "before_cursor_execute", note)


async def test_a_statement_on_the_driver_is_a_checkout_the_pool_metric_counts(
    one_connection,
) -> None:
    """The driver path checks its connection out of the pool itself: the pool's events still
    fire, so `chatkit_db_connections_in_use` counts it while it runs and not after."""
    count_connections(one_connection)
    single = SingleStatements(one_connection)
    nap: Statement = select(literal_column("pg_sleep(0.3)").label("slept"))
    prepared = single.prepare(nap)
    assert prepared.sql is not None  # on the driver

    def in_use() -> float:
        return REGISTRY.get_sample_value("chatkit_db_connections_in_use") or 0.0

    before = in_use()
    statement = asyncio.create_task(single.rows(prepared, {}))
    for _ in range(100):  # until the statement holds its connection
        if in_use() > before:
            break
        await asyncio.sleep(0.01)
    assert in_use() == before + 1
    await statement
    assert in_use() == before
