"""Outage or bug: `is_outage` against the errors a real PostgreSQL (and SQLite) raise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from sqlalchemy import column, select, table, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable

from app.store.db import create_engine
from app.store.errors import is_outage
from app.store.models import ThreadRow
from tests.conftest import make_settings
from tests.helpers.postgres_cluster import PostgresCluster
from tests.helpers.server import free_port


async def raised(
    engine: AsyncEngine, statement: Executable, params: dict[str, Any] | None = None
) -> BaseException:
    with pytest.raises(Exception) as caught:  # noqa: B017 - the test is what was raised
        async with engine.connect() as conn:
            await conn.execute(statement, params)
    return caught.value


@pytest.fixture
async def pg_engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(make_settings(postgres_url))
    yield engine
    await engine.dispose()


async def test_too_many_query_arguments_is_a_bug_not_an_outage(pg_engine) -> None:
    """asyncpg refuses more than 32767 arguments with an `InterfaceError`: a bug to fix."""
    ids = [f"thr_{n}" for n in range(40_000)]
    error = await raised(pg_engine, select(ThreadRow.id).where(ThreadRow.id.in_(ids)))
    assert "arguments" in str(error)
    assert not is_outage(error)


@pytest.mark.parametrize(
    ("statement", "params"),
    [
        (text("SELEC 1"), None),  # syntax error, 42601
        (text("SELECT :value::int"), {"value": "x"}),  # invalid input, 22P02
        (text("SELECT 1 FROM no_such_table"), None),  # 42P01
        (select(column("id")).select_from(table("threads")).where(column("id") == "a\x00"), None),
    ],
    ids=["syntax", "invalid_input", "undefined_table", "nul_in_text"],
)
async def test_statement_errors_are_bugs(pg_engine, statement, params) -> None:
    assert not is_outage(await raised(pg_engine, statement, params))


async def test_constraint_violations_are_bugs(pg_engine) -> None:
    with pytest.raises(IntegrityError) as caught:
        async with pg_engine.begin() as conn:
            await conn.execute(text("CREATE TEMP TABLE once (id int PRIMARY KEY)"))
            await conn.execute(text("INSERT INTO once VALUES (1), (1)"))
    assert not is_outage(caught.value)


async def test_sqlite_errors_are_bugs(sqlite_url: str) -> None:
    engine = create_engine(make_settings(sqlite_url))
    try:
        assert not is_outage(await raised(engine, text("SELECT * FROM no_such_table")))
    finally:
        await engine.dispose()


async def test_a_terminated_session_is_an_outage(pg_engine, postgres_url: str) -> None:
    """57P01 (`admin_shutdown`): what every session gets when PostgreSQL stops or restarts."""
    async with pg_engine.connect() as conn:
        pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        admin = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        with pytest.raises(DBAPIError) as caught:
            await conn.execute(text("SELECT 1"))
    assert is_outage(caught.value)


async def test_nothing_listening_is_an_outage() -> None:
    engine = create_engine(make_settings(f"postgresql://postgres@127.0.0.1:{free_port()}/x"))
    try:
        assert is_outage(await raised(engine, text("SELECT 1")))
    finally:
        await engine.dispose()


async def test_too_many_connections_is_an_outage(postgres_url: str) -> None:
    """53300 (`too_many_connections`): a full server refuses new sessions until others end.
    A role whose connection limit is 0 gets exactly that refusal."""
    role = f"full_{uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
    await admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
    engine = create_engine(make_settings(postgres_url.replace("postgres@", f"{role}@", 1)))
    try:
        error = await raised(engine, text("SELECT 1"))
        assert "too many connections" in str(error)
        assert is_outage(error)
    finally:
        await engine.dispose()
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


async def test_a_server_shutting_down_is_an_outage(own_postgres: PostgresCluster) -> None:
    """57P03 (`cannot_connect_now`): a smart shutdown refuses new sessions while old ones end."""
    url = await asyncio.to_thread(own_postgres.create_database, "shutting_down")
    holder = await asyncpg.connect(url.replace("+asyncpg", ""))
    engine = create_engine(make_settings(url))
    try:
        await asyncio.to_thread(own_postgres.stop, "smart", wait=False)
        error = await raised(engine, text("SELECT 1"))
        assert "shutting down" in str(error)
        assert is_outage(error)
    finally:
        await holder.close()
        await engine.dispose()
        await asyncio.to_thread(own_postgres.restart)
