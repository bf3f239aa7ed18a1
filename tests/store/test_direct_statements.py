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
from sqlalchemy import bindparam, column, delete, event, insert, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.observability.tracing import without_spans
from app.store.db import Prepared, SingleStatements, Statement, create_engine, utcnow
from app.store.errors import is_outage
from app.store.models import TaskRow, UsageCounterRow
from app.store.store import THREAD, SQLAlchemyStore
from tests.conftest import make_settings, new_user
from tests.helpers.items import every_item_type
from tests.helpers.server import free_port

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


def test_postgres_runs_them_on_the_driver_and_the_others_through_sqlalchemy(
    postgres_url: str, sqlite_url: str
) -> None:
    direct = SingleStatements(create_engine(make_settings(postgres_url)))
    assert direct.direct
    assert direct.prepare(THREAD).sql is not None
    for settings in (
        make_settings(sqlite_url),
        make_settings(postgres_url, database_pgbouncer=True),
    ):
        single = SingleStatements(create_engine(settings))
        assert not single.direct
        assert single.prepare(THREAD).sql is None


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


async def test_json_and_timestamps_are_sent_as_sqlalchemy_sends_them(one_connection) -> None:
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


def test_a_statement_with_python_side_defaults_is_refused(postgres_url: str) -> None:
    """Its defaults are computed by SQLAlchemy's execution, which the driver skips."""
    single = SingleStatements(create_engine(make_settings(postgres_url)))
    with pytest.raises(ValueError, match="defaults"):
        single.prepare(insert(TaskRow), ["id", "user_id", "title"])  # `done` has one


async def test_an_error_the_server_answers_keeps_the_connection(one_connection) -> None:
    single = SingleStatements(one_connection)
    before = await backend_pid(single)
    bad = select(text("1 / 0"))
    with pytest.raises(asyncpg.DivisionByZeroError) as caught:
        await single.rows(single.prepare(bad), {})
    assert not is_outage(caught.value)
    assert await backend_pid(single) == before


async def test_a_broken_connection_is_an_outage_and_is_discarded(
    one_connection, postgres_url: str
) -> None:
    single = SingleStatements(one_connection)
    before = await backend_pid(single)
    await terminate(postgres_url, before)
    with pytest.raises(Exception) as caught:  # noqa: B017 - what was raised is the test
        await backend_pid(single)
    assert is_outage(caught.value)
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


async def test_no_server_on_the_driver_path_reads_as_an_outage() -> None:
    """No server at all: the pool's own connect fails, as through SQLAlchemy."""
    engine = create_engine(make_settings(f"postgresql://postgres@127.0.0.1:{free_port()}/x"))
    single = SingleStatements(engine)
    try:
        with pytest.raises(Exception) as caught:  # noqa: B017 - what was raised is the test
            await single.rows(single.prepare(select(column("x"))), {})
        assert is_outage(caught.value)
    finally:
        await engine.dispose()


async def test_statements_someone_listens_to_run_through_sqlalchemy(one_connection) -> None:
    """The SQLAlchemy tracing of a sampled request (or a test counting statements) sees every
    statement; where spans are suppressed (a request not sampled), none would be recorded."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    single = SingleStatements(one_connection)
    probe = single.prepare(select(literal_column("'probe'").label("probe")))
    await single.rows(probe, {})
    assert seen == []
    event.listen(one_connection.sync_engine, "before_cursor_execute", note)
    try:
        assert [dict(row) for row in await single.rows(probe, {})] == [{"probe": "probe"}]
        assert len(seen) == 1
        token = without_spans()
        try:
            await single.rows(probe, {})
        finally:
            detach(token)
        assert len(seen) == 1
    finally:
        event.remove(one_connection.sync_engine, "before_cursor_execute", note)
