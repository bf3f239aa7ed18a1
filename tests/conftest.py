"""Shared fixtures: migrated databases, settings, the app with its lifespan, an HTTP client."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.context import RequestContext
from app.main import create_app
from app.store.db import PROJECT_ROOT, create_engine
from app.store.store import SQLAlchemyStore
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


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
