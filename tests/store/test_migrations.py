"""Alembic: the history upgrades, downgrades and upgrades again, and matches the models."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from app.store.models import Base
from tests.helpers.database import alembic_config


def table_names(url: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        await engine.dispose()
        return names

    return asyncio.run(read())


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database(
    request: pytest.FixtureRequest, tmp_path: Path, scratch_postgres: Callable[[str], str]
) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
    return scratch_postgres("migrations")


def test_upgrade_downgrade_upgrade_without_drift(empty_database: str) -> None:
    """The one `alembic check` (per database): the models and the migrations agree."""
    config = alembic_config(empty_database)
    app_tables = set(Base.metadata.tables)

    command.upgrade(config, "head")
    assert app_tables <= table_names(empty_database)

    command.downgrade(config, "base")
    assert table_names(empty_database) & app_tables == set()

    command.upgrade(config, "head")
    assert app_tables <= table_names(empty_database)
    command.check(config)  # raises if the models and the migrations disagree


def test_history_is_linear() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1
    assert len(script.get_bases()) == 1
