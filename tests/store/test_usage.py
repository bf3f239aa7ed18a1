"""Usage counters: atomic increments under concurrency, expired windows cleaned, no schema drift."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from uuid import uuid4

from alembic import command
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.models import UsageCounterRow
from app.store.usage import UsageCounters
from tests.helpers.database import alembic_config

START = datetime(2030, 5, 1, 10, 0)


async def test_concurrent_increments_never_lose_a_count(engine: AsyncEngine) -> None:
    counters = UsageCounters(engine)
    user = f"u-{uuid4().hex[:10]}"
    end = START + timedelta(minutes=1)
    counts = await asyncio.gather(
        *(counters.increment(user, "requests", START, end) for _ in range(25))
    )
    assert sorted(counts) == list(range(1, 26))


async def test_windows_and_buckets_count_separately(engine: AsyncEngine) -> None:
    counters = UsageCounters(engine)
    user = f"u-{uuid4().hex[:10]}"
    later = START + timedelta(minutes=1)
    assert await counters.increment(user, "requests", START, later) == 1
    assert await counters.increment(user, "messages", START, START + timedelta(days=1)) == 1
    assert await counters.increment(f"{user}-other", "requests", START, later) == 1
    assert await counters.increment(user, "requests", START, later) == 2


async def test_a_new_window_drops_the_users_expired_ones(engine: AsyncEngine) -> None:
    counters = UsageCounters(engine)
    user = f"u-{uuid4().hex[:10]}"
    day_end = START + timedelta(days=1)
    await counters.increment(user, "requests", START, START + timedelta(minutes=1))
    await counters.increment(user, "messages", START, day_end)
    next_minute = START + timedelta(minutes=5)
    await counters.increment(user, "requests", next_minute, next_minute + timedelta(minutes=1))
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(UsageCounterRow.bucket, UsageCounterRow.window_start).where(
                    UsageCounterRow.user_id == user
                )
            )
        ).all()
    assert sorted(rows) == [("messages", START), ("requests", next_minute)]


def test_models_match_the_migrations(database_url: str) -> None:
    command.check(alembic_config(database_url))  # raises on any drift
