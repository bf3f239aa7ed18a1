"""Replicas (or a release step and a replica) that migrate at once take turns on one lock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
from sqlalchemy.engine import make_url

from app.store.db import MIGRATION_LOCK_KEY, migration_head
from tests.helpers.dockerfile import read_runtime_image
from tests.helpers.platforms import migration_command
from tests.helpers.server import base_environment

WAITERS_QUERY = """
    SELECT count(*) FROM pg_locks JOIN pg_database d ON d.oid = pg_locks.database
    WHERE locktype = 'advisory' AND NOT granted AND d.datname = current_database()
"""


async def connect(url: str) -> asyncpg.Connection:
    parts = make_url(url)
    return await asyncpg.connect(
        host=parts.host, port=parts.port or 5432, user=parts.username, database=parts.database
    )


async def wait_for_waiters(conn: asyncpg.Connection, count: int) -> None:
    try:
        async with asyncio.timeout(60):
            while True:
                if await conn.fetchval(WAITERS_QUERY) >= count:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"fewer than {count} migrations waited on the lock") from None


async def test_two_concurrent_migrations_both_succeed_and_leave_one_schema_at_head(
    tmp_path, scratch_postgres: Callable[[str], str]
) -> None:
    url = await asyncio.to_thread(scratch_postgres, "mig")
    root = read_runtime_image().layout(tmp_path / "image")
    env = base_environment(DATABASE_URL=url)
    holder = await connect(url)
    try:
        # Hold the migration lock so that both runs are provably inside the critical section
        # together: each must queue behind it instead of racing to create the same tables.
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        runs = [
            await asyncio.create_subprocess_exec(
                *migration_command(),
                cwd=root,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            for _ in range(2)
        ]
        await wait_for_waiters(holder, 2)
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        outputs = [await run.communicate() for run in runs]
        for run, (output, _) in zip(runs, outputs, strict=True):
            assert run.returncode == 0, output.decode()

        assert await holder.fetch("SELECT version_num FROM alembic_version") == [
            (migration_head(),)
        ]
        tables = await holder.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'threads'"
        )
        assert tables == 1
    finally:
        await holder.close()
