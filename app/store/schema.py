"""Whether the database is at the migrations' head, and what happens when it is not.

The embedded SQLite database migrates itself at startup: `uvicorn app.main:app` on a fresh file
just works. PostgreSQL is migrated by the release step (`alembic upgrade head`); until it is at
head, `/chatkit` answers a 503 that says so, instead of a 500 on every request.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import Unavailable
from app.store.db import PROJECT_ROOT, database_revision

logger = logging.getLogger(__name__)


class SchemaNotMigrated(Unavailable):
    code = "schema_not_migrated"


def schema_problem(revision: str | None, head: str | None) -> str:
    return (
        f"The database schema is at {revision or 'nothing'}, expected {head}: "
        "run `alembic upgrade head`"
    )


def alembic_config(url: str) -> Config:
    """The project's Alembic configuration, on `url`, leaving the app's logging alone."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False
    return config


@dataclass(slots=True)
class Schema:
    engine: AsyncEngine
    url: str
    head: str | None
    embedded: bool
    """SQLite: the app migrates it itself."""
    ready: bool = field(default=False)
    """At head, once seen there (a schema never goes back)."""

    async def prepare(self) -> None:
        """At startup: bring the embedded database to head."""
        if not self.embedded:
            return
        revision = await database_revision(self.engine)
        if revision != self.head:
            logger.info(
                "Migrating the SQLite database from %s to %s", revision or "nothing", self.head
            )
            await asyncio.to_thread(command.upgrade, alembic_config(self.url), "head")

    async def check(self) -> None:
        """Raise `SchemaNotMigrated` unless the database is at head (one query until it is)."""
        if self.ready:
            return
        revision = await database_revision(self.engine)
        if revision != self.head:
            raise SchemaNotMigrated(schema_problem(revision, self.head))
        self.ready = True
