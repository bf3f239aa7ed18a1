"""Test databases: a fresh PostgreSQL database per test worker, and SQLite files, both migrated."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import normalize_database_url
from app.store.db import PROJECT_ROOT

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def postgres_base_url() -> str:
    """The server the suite uses: `TEST_DATABASE_URL`, else `DATABASE_URL`, else the local one."""
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or ""
    if not url.startswith("postgres"):
        url = DEFAULT_POSTGRES_URL
    return normalize_database_url(url)


def fresh_postgres_database(name: str) -> str:
    """(Re)create database `name` on the test server and return its async URL."""
    return _admin(name, recreate=True)


def drop_postgres_database(name: str) -> None:
    _admin(name, recreate=False)


def _admin(name: str, *, recreate: bool) -> str:
    """Run DROP (and CREATE) DATABASE from the server's maintenance database."""
    base = make_url(postgres_base_url())

    async def recreate_database() -> None:
        admin = await asyncpg.connect(
            host=base.host,
            port=base.port or 5432,
            user=base.username,
            password=base.password,
            database=base.database,
        )
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if recreate:
                await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    asyncio.run(recreate_database())
    return base.set(database=name).render_as_string(hide_password=False)


def alembic_config(url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False
    return config


def migrate(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


async def owned_rows(engine: AsyncEngine, *tables: Any, user_id: str) -> int:
    """How many rows of `tables` (each with a `user_id` column) belong to `user_id`."""
    async with engine.connect() as conn:
        counts = [
            await conn.scalar(
                select(func.count()).select_from(table).where(table.user_id == user_id)
            )
            for table in tables
        ]
    return sum(int(count or 0) for count in counts)
