"""A server on a database that was never migrated: SQLite migrates itself, PostgreSQL says how.

Before, every request on such a database was a 500 "Something went wrong".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from tests.conftest import make_settings
from tests.helpers.apps import running_app
from tests.helpers.chatkit import create_thread_req, post, sse_events
from tests.helpers.database import migrate

LIST_THREADS = {"type": "threads.list", "params": {}}


async def test_an_embedded_database_migrates_itself_at_startup(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    async with running_app(make_settings(url)) as running:
        ready = await running.client.get("/readyz")
        assert ready.status_code == 200, ready.text
        response = await post(running.client, "alice", create_thread_req("Hello"))
        assert response.status_code == 200, response.text
        assert any(event["type"] == "thread.created" for event in sse_events(response))


async def test_postgres_behind_head_is_a_503_naming_the_migration_until_migrated(
    scratch_postgres: Callable[[str], str],
) -> None:
    url = await asyncio.to_thread(scratch_postgres, "unmigrated")
    async with running_app(make_settings(url)) as running:
        for _ in range(2):  # stays a 503, not a 500 on the second request either
            refused = await post(running.client, "alice", LIST_THREADS)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "schema_not_migrated"
            assert "`alembic upgrade head`" in refused.json()["message"]
            assert "at nothing" in refused.json()["message"]
        ready = await running.client.get("/readyz")
        assert ready.status_code == 503 and "alembic upgrade head" in ready.json()["reason"]

        await asyncio.to_thread(migrate, url, "0003")
        behind = await post(running.client, "alice", LIST_THREADS)
        assert behind.status_code == 503 and "at 0003" in behind.json()["message"]

        await asyncio.to_thread(migrate, url)  # the release step, while the server runs
        served = await post(running.client, "alice", LIST_THREADS)
        assert served.status_code == 200, served.text
        assert (await running.client.get("/readyz")).status_code == 200
