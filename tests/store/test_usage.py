"""Usage counters: atomic increments under concurrency, window resets, no schema drift."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from uuid import uuid4

from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.usage import UsageCounters, Window
from tests.helpers.database import alembic_config

START = datetime(2030, 5, 1, 10, 0)


def user() -> str:
    return f"u-{uuid4().hex[:10]}"


async def test_concurrent_hits_never_lose_a_count(engine: AsyncEngine) -> None:
    counters = UsageCounters(engine)
    who = user()
    window = Window("requests", START, limit=10)
    results = await asyncio.gather(*(counters.hit(who, [window]) for _ in range(25)))
    refused = sorted(count for over in results if over is not None for _, count in [over])
    assert refused == list(range(11, 26))  # exactly 10 got through, every count seen once


async def test_a_newer_window_restarts_the_count(engine: AsyncEngine) -> None:
    counters = UsageCounters(engine)
    who = user()
    minute = Window("requests", START, limit=1)
    assert await counters.hit(who, [minute]) is None
    assert await counters.hit(who, [minute]) == (minute, 2)
    next_minute = Window("requests", START + timedelta(minutes=1), limit=1)
    assert await counters.hit(who, [next_minute]) is None
    # A lagging process's hit in the old window counts in the current one.
    assert await counters.hit(who, [minute]) == (minute, 2)


async def test_buckets_and_users_count_separately(engine: AsyncEngine) -> None:
    counters = UsageCounters(engine)
    who = user()
    requests = Window("requests", START, limit=1)
    messages = Window("messages", START, limit=1)
    assert await counters.hit(who, [requests, messages]) is None
    assert await counters.hit(user(), [requests, messages]) is None
    assert await counters.hit(who, [messages]) == (messages, 2)


async def test_a_refused_window_stops_the_later_ones(engine: AsyncEngine) -> None:
    counters = UsageCounters(engine)
    who = user()
    requests = Window("requests", START, limit=1)
    messages = Window("messages", START, limit=1)
    assert await counters.hit(who, [requests, messages]) is None
    assert await counters.hit(who, [requests, messages]) == (requests, 2)
    # The refused request did not use up a message: the next minute's message is the second.
    later = Window("requests", START + timedelta(minutes=1), limit=1)
    assert await counters.hit(who, [later, messages]) == (messages, 2)


def test_models_match_the_migrations(database_url: str) -> None:
    command.check(alembic_config(database_url))  # raises on any drift
