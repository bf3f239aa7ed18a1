"""Engine and session factory for PostgreSQL (asyncpg) or the embedded SQLite database."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Collection
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from app.config import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MAX_ID_LENGTH = 64
ID_SHAPE = re.compile(r"([a-z]+)_[A-Za-z0-9_-]+")
# PostgreSQL advisory lock that `migrations/env.py` holds while it migrates.
MIGRATION_LOCK_KEY = 7_214_406_983_116_055_002
PGBOUNCER = "chatkit_pgbouncer"
"""The engine's execution option that says `DATABASE_PGBOUNCER` is on."""


def create_engine(settings: Settings) -> AsyncEngine:
    """Build the engine; SQLite gets WAL, a busy timeout and enforced foreign keys."""
    if settings.is_sqlite:
        engine = create_async_engine(settings.database_url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        settings.database_url,
        connect_args=_pgbouncer_arguments() if settings.database_pgbouncer else {},
        execution_options={PGBOUNCER: settings.database_pgbouncer},
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        # No pre-ping (a round trip per checkout): a connection that died with the server is
        # detected on use, and SQLAlchemy then discards the whole pool.
        pool_recycle=1800,
    )


def _pgbouncer_arguments() -> dict[str, Any]:
    """asyncpg behind PgBouncer's transaction mode (PgBouncer before 1.21 keeps no prepared
    statements across transactions): no statement caches, and a unique name for each statement
    asyncpg still prepares, so that two clients never collide on one server connection."""
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__",
    }


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; FULL fsyncs every commit
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def upsert_insert(engine: AsyncEngine) -> Any:
    """The dialect's `insert`, which has `on_conflict_do_update` on both PostgreSQL and SQLite."""
    return pg_insert if engine.dialect.name == "postgresql" else sqlite_insert


def random_id(prefix: str) -> str:
    """`prefix_` + 12 hex digits of milliseconds + 128 random bits: time-sortable, never colliding.

    The SDK's default ids carry 32 random bits and would collide in a shared table.
    """
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(16)}"


def has_id_shape(value: str, prefixes: Collection[str]) -> bool:
    """Whether `value` could be an id `random_id` made with one of `prefixes`.

    That is the prefix, `_`, then characters of `[A-Za-z0-9_-]`, 64 in all at most (the id
    columns' width). Anything else names no row, so it need never reach the database.
    """
    if len(value) > MAX_ID_LENGTH:
        return False
    match = ID_SHAPE.fullmatch(value)
    return match is not None and match.group(1) in prefixes


def utcnow() -> datetime:
    """Now, as the naive UTC timestamps the tables store."""
    return datetime.now(UTC).replace(tzinfo=None)


class SingleStatements:
    """Connections of the engine's pool for one statement each, which is atomic on its own.

    No BEGIN/COMMIT (or ROLLBACK) round trips (AUTOCOMMIT), except behind PgBouncer's
    transaction mode: there SQLAlchemy's asyncpg driver prepares a statement and executes it in
    two exchanges, which only a transaction keeps on one server connection.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.transactions = bool(engine.get_execution_options().get(PGBOUNCER))
        self.engine = (
            engine if self.transactions else engine.execution_options(isolation_level="AUTOCOMMIT")
        )

    def connect(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self.engine.begin() if self.transactions else self.engine.connect()


def autocommit(engine: AsyncEngine) -> SingleStatements:
    """The same pool, for single statements (see `SingleStatements`)."""
    return SingleStatements(engine)


def migration_head() -> str | None:
    """The newest revision in `migrations/`, which a ready database must be at."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    return ScriptDirectory.from_config(config).get_current_head()


async def database_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at; raises if the database cannot be reached."""
    async with engine.connect() as conn:
        if not await conn.run_sync(lambda sync: inspect(sync).has_table("alembic_version")):
            return None
        return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
