"""Engine and session factory for PostgreSQL (asyncpg) or the embedded SQLite database."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from weakref import WeakKeyDictionary

from alembic.config import Config
from alembic.script import ScriptDirectory
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, get_value
from sqlalchemy import Engine, Select, UpdateBase, event, inspect, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import Pool, PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from app.config import Settings
from app.store.errors import is_outage

T = TypeVar("T")
MAX_CLOSED_CONNECTIONS = 100
"""Closed connections `live_connection` replaces before giving up (more than any pool holds)."""


class Row(Protocol):
    """A row as `SingleStatements.rows` returns it (an asyncpg `Record`, or SQLAlchemy's
    `RowMapping`): a column's value by its name."""

    def __getitem__(self, key: str, /) -> Any: ...

    def keys(self) -> Iterable[str]: ...


Statement = Select[*tuple[Any, ...]] | UpdateBase
"""A statement `SingleStatements.prepare` takes: a SELECT, or an INSERT, UPDATE or DELETE."""


class StatementSpans(Protocol):
    """A span around each statement run on the driver (app/observability/statement_spans.py)."""

    @property
    def listeners(self) -> int:
        """How many of the engine's `before_cursor_execute` listeners are the tracing's own."""

    def __call__(self, sql: str, /) -> AbstractContextManager[None]: ...


_STATEMENT_SPANS: WeakKeyDictionary[Engine, StatementSpans] = WeakKeyDictionary()


def trace_driver_statements(engine: AsyncEngine, spans: StatementSpans | None) -> None:
    """Span the statements `SingleStatements` runs on `engine`'s driver (`None`: no more)."""
    if spans is None:
        _STATEMENT_SPANS.pop(engine.sync_engine, None)
    else:
        _STATEMENT_SPANS[engine.sync_engine] = spans


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


@dataclass(frozen=True, slots=True)
class Bind:
    """One positional parameter of a `Prepared` statement's SQL."""

    name: str
    convert: Callable[[Any], Any] | None
    """As SQLAlchemy converts the value for asyncpg (JSON is sent as text)."""
    fixed: Any = None
    """The value of a parameter the statement itself holds (`set_={"followed": False}`)."""
    required: bool = True


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement built once, for `SingleStatements` to run.

    `sql` is what SQLAlchemy compiles it to for asyncpg, with `binds` its positional
    parameters; `None` where the statement runs through SQLAlchemy (SQLite, PgBouncer's
    transaction mode).
    """

    statement: Statement
    sql: str | None = None
    binds: tuple[Bind, ...] = ()

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        values = (
            params[bind.name] if bind.required else params.get(bind.name, bind.fixed)
            for bind in self.binds
        )
        return [
            value if bind.convert is None else bind.convert(value)
            for bind, value in zip(self.binds, values, strict=True)
        ]


class SingleStatements:
    """Connections of the engine's pool for one statement each, which is atomic on its own.

    No BEGIN/COMMIT (or ROLLBACK) round trips (AUTOCOMMIT), except behind PgBouncer's
    transaction mode: there SQLAlchemy's asyncpg driver prepares a statement and executes it in
    two exchanges, which only a transaction keeps on one server connection.

    The statements every turn runs are `prepare`d, and on PostgreSQL run on the pooled
    connection's asyncpg connection (`rows`, `rowcount`): SQLAlchemy's execution layer cost
    as much CPU as the driver's (about 0.2 ms a statement), for statements that need none of
    it. The SQL is still SQLAlchemy's, compiled once; the pool is still its own.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.transactions = bool(engine.get_execution_options().get(PGBOUNCER))
        self._sync_engine = engine.sync_engine  # its pool, and the key of its `StatementSpans`
        self.engine = (
            engine if self.transactions else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self.direct = engine.dialect.driver == "asyncpg" and not self.transactions

    def connect(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self.engine.begin() if self.transactions else self.engine.connect()

    def prepare(self, statement: Statement, keys: Sequence[str] | None = None) -> Prepared:
        """`statement`, compiled now if it will run on the driver. An INSERT without values
        takes every column of its table, or the columns `keys` (each row then has exactly
        those, and SQLAlchemy would fill the others in).

        Refused: what SQLAlchemy's execution would complete at run time (Python-side
        defaults, values computed per call, lists expanded into the SQL).
        """
        if not self.direct:
            return Prepared(statement)
        dialect = self.engine.dialect
        compiled = statement.compile(dialect=dialect, column_keys=keys)
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError("a statement with Python-side defaults cannot run on the driver")
        if compiled.post_compile_params or compiled.literal_execute_params:
            raise ValueError("a statement whose SQL is completed per call cannot be prepared")
        binds = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            if bind.callable is not None:
                raise ValueError(f"parameter {name!r} is computed per call")
            convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
            binds.append(Bind(name, convert, bind.effective_value, bind.required))
        return Prepared(statement, compiled.string, tuple(binds))

    async def rows(self, prepared: Prepared, params: Mapping[str, Any]) -> Sequence[Row]:
        """The rows the statement returns (asyncpg's records, or SQLAlchemy's row mappings:
        a column's value by its name)."""
        if not self._on_driver(prepared):
            async with self.connect() as conn:
                result = await conn.execute(prepared.statement, params)
                return result.mappings().all()
        records: list[Row] = await self._run_on_driver(
            prepared, params, lambda driver, args: driver.fetch(prepared.sql, *args)
        )
        return records

    async def rowcount(self, prepared: Prepared, params: Mapping[str, Any]) -> int:
        """How many rows the statement (an INSERT, UPDATE or DELETE) wrote."""
        if not self._on_driver(prepared):
            async with self.connect() as conn:
                return (await conn.execute(prepared.statement, params)).rowcount
        status: str = await self._run_on_driver(
            prepared, params, lambda driver, args: driver.execute(prepared.sql, *args)
        )
        return int(status.rsplit(" ", 1)[-1])  # "INSERT 0 1", "UPDATE 2", "DELETE 0"

    def _on_driver(self, prepared: Prepared) -> bool:
        """Whether to skip SQLAlchemy's execution: where the statement was compiled for the
        driver, unless something listens to the engine's statements (a test counting them),
        which then sees them as before. The SQLAlchemy tracing's listeners are no reason: its
        spans are made here too (`StatementSpans`)."""
        if prepared.sql is None:
            return False
        listeners = len(self.engine.sync_engine.dispatch.before_cursor_execute)
        if spans := _STATEMENT_SPANS.get(self._sync_engine):
            listeners -= spans.listeners
        return listeners <= 0 or bool(get_value(_SUPPRESS_INSTRUMENTATION_KEY))

    async def _run_on_driver(
        self,
        prepared: Prepared,
        params: Mapping[str, Any],
        run: Callable[[Any, list[Any]], Awaitable[T]],
    ) -> T:
        """`run(asyncpg_connection, arguments)` on a pooled connection.

        Failures read as they do through SQLAlchemy: a `DBAPIError` wrapping the driver's error,
        `connection_invalidated` when the connection broke. As SQLAlchemy does, a connection
        that broke, or whose statement was cancelled mid-way, is discarded; one that answered
        an error goes back to the pool.
        """
        arguments = prepared.arguments(params)  # before a connection is held for it
        spans = _STATEMENT_SPANS.get(self._sync_engine)
        if spans is not None and not get_value(_SUPPRESS_INSTRUMENTATION_KEY):
            run = _spanned(spans, str(prepared.sql), run)
        pooled = await live_connection(self._sync_engine.pool)
        try:
            driver: Any = pooled.driver_connection  # asyncpg's
            try:
                return await run(driver, arguments)
            except Exception as exc:
                broken = driver.is_closed() or is_outage(exc)
                if broken:
                    pooled.invalidate(exc)
                raise DBAPIError.instance(
                    prepared.sql,
                    None,
                    exc,
                    Exception,
                    hide_parameters=True,
                    connection_invalidated=broken,
                    dialect=self.engine.dialect,
                ) from exc
            except BaseException:
                pooled.invalidate()
                raise
        finally:
            await greenlet_spawn(pooled.close)  # back to the pool (an overflow one is closed)


def _spanned(
    spans: StatementSpans, sql: str, run: Callable[[Any, list[Any]], Awaitable[T]]
) -> Callable[[Any, list[Any]], Awaitable[T]]:
    """`run` in a span, as SQLAlchemy's instrumentation spans the statement's execution only
    (a wait for a pooled connection stays a gap before it)."""

    async def spanned(driver: Any, arguments: list[Any]) -> T:
        with spans(sql):
            return await run(driver, arguments)

    return spanned


async def live_connection(pool: Pool) -> PoolProxiedConnection:
    """A connection checked out of `pool`, replacing any the server has closed since it was
    pooled (a restart closes every session): as SQLAlchemy discards the pool on such a
    failure, no request fails on a connection already known to be dead. No round trip:
    asyncpg has seen the connection close. Straight from the pool, without an engine
    `Connection` around it: that cost 70 µs of CPU a statement, a third of the statement's."""
    for _ in range(MAX_CLOSED_CONNECTIONS):
        pooled: PoolProxiedConnection = await greenlet_spawn(pool.connect)
        driver = pooled.driver_connection
        if driver is not None and not driver.is_closed():
            return pooled
        pooled.invalidate()
        await greenlet_spawn(pooled.close)
    raise DBAPIError(
        None, None, ConnectionResetError("no open connection"), connection_invalidated=True
    )


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
