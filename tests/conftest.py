"""Shared fixtures: migrated databases, settings, the app with its lifespan, an HTTP client.

`running` is the app built from the test settings (one per module and database; a module may
add its own `APP_SETTINGS`); `services` is what it serves with, and `client` talks to it. A test
that needs an app of its own uses `tests.helpers.apps.running_app` itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.agent.fake_model import FakeModel
from app.config import Settings
from app.context import RequestContext
from app.services import Services
from app.store.db import PROJECT_ROOT, create_engine
from app.store.store import SQLAlchemyStore
from tests.helpers.apps import RunningApp, running_app
from tests.helpers.database import drop_postgres_database, fresh_postgres_database, migrate
from tests.helpers.postgres_cluster import PostgresCluster, postgres_bin_dir


def worker_database_name() -> str:
    """Unique per checkout and xdist worker, so parallel runs never share a database."""
    checkout = re.sub(r"[^a-z0-9]", "_", PROJECT_ROOT.name.lower())[:20]
    return f"chatkit_test_{checkout}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated database of this run's own, dropped when the run ends."""
    name = worker_database_name()
    url = fresh_postgres_database(name)
    migrate(url)
    yield url
    drop_postgres_database(name)


@pytest.fixture
def scratch_postgres() -> Iterator[Callable[[str], str]]:
    """Make fresh, empty databases on the test server (`<worker database>_<suffix>`) for one test;
    each is dropped when the test ends, so that no run leaves a database behind."""
    names: list[str] = []

    def create(suffix: str) -> str:
        name = f"{worker_database_name()}_{suffix}"
        names.append(name)
        return fresh_postgres_database(name)

    yield create
    for name in names:
        drop_postgres_database(name)


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresCluster]:
    """A running PostgreSQL server of the module's own, which its tests may stop and restart."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    cluster = PostgresCluster(bin_dir).init()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("sqlite") / "chatkit.db"
    url = f"sqlite+aiosqlite:///{path}"
    migrate(url)
    return url


@pytest.fixture(scope="session", params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test that uses this runs once per database."""
    fixture = "postgres_url" if request.param == "postgresql" else "sqlite_url"
    url: str = request.getfixturevalue(fixture)
    return url


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "environment": "development",
        "model_provider": "fake",
        "fake_model_delay_ms": 0,
        # Tests name their user with X-User-Id, as a trusted proxy would in development.
        "auth_trust_user_headers": True,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(make_settings(database_url))
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> SQLAlchemyStore:
    return SQLAlchemyStore(engine)


def new_user() -> RequestContext:
    return RequestContext(user_id=f"user-{uuid4().hex[:12]}", auth_method="development")


@pytest.fixture
def user() -> RequestContext:
    return new_user()


@pytest.fixture
def other_user() -> RequestContext:
    return new_user()


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture(scope="module")
async def running(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[RunningApp]:
    """The app a module's tests talk to: the test settings, plus the module's `APP_SETTINGS`."""
    overrides: dict[str, Any] = getattr(request.module, "APP_SETTINGS", {})
    async with running_app(make_settings(database_url, **overrides)) as running:
        yield running


@pytest.fixture
def services(running: RunningApp) -> Services:
    return running.services


@pytest.fixture
def client(running: RunningApp) -> httpx.AsyncClient:
    return running.client


@pytest.fixture
def fake_model(running: RunningApp) -> Iterator[FakeModel]:
    """The app's scripted model; no scripted turn leaks from one test into the next."""
    model = running.fake_model
    model.script.reset()
    yield model
    model.script.reset()
