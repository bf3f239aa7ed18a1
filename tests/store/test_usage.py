"""Usage counters: atomic increments under concurrency, window resets."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from uuid import uuid4

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.usage import UsageCounters, Window

START = datetime(2030, 5, 1, 10, 0)
REQUESTS = Window("requests", START, limit=1)
MESSAGES = Window("messages", START, limit=1)


@pytest.fixture
def counters(engine: AsyncEngine) -> UsageCounters:
    return UsageCounters(engine)


def user() -> str:
    return f"u-{uuid4().hex[:10]}"


async def test_concurrent_hits_never_lose_a_count(counters: UsageCounters) -> None:
    who = user()
    window = Window("requests", START, limit=10)
    results = await asyncio.gather(*(counters.hit(who, [window]) for _ in range(25)))
    refused = sorted(count for over in results if over is not None for _, count in [over])
    assert refused == list(range(11, 26))  # exactly 10 got through, every count seen once


async def test_a_newer_window_restarts_the_count(counters: UsageCounters) -> None:
    who = user()
    assert await counters.hit(who, [REQUESTS]) is None
    assert await counters.hit(who, [REQUESTS]) == (REQUESTS, 2)
    next_minute = Window("requests", START + timedelta(minutes=1), limit=1)
    assert await counters.hit(who, [next_minute]) is None
    # A lagging process's hit in the old window counts in the current one.
    assert await counters.hit(who, [REQUESTS]) == (REQUESTS, 2)


async def test_buckets_and_users_count_separately(counters: UsageCounters) -> None:
    who = user()
    assert await counters.hit(who, [REQUESTS, MESSAGES]) is None
    assert await counters.hit(user(), [REQUESTS, MESSAGES]) is None
    assert await counters.hit(who, [MESSAGES]) == (MESSAGES, 2)


async def test_a_refused_window_stops_the_later_ones(counters: UsageCounters) -> None:
    who = user()
    assert await counters.hit(who, [REQUESTS, MESSAGES]) is None
    assert await counters.hit(who, [REQUESTS, MESSAGES]) == (REQUESTS, 2)
    # The refused request did not use up a message: the next minute's message is the second.
    later = Window("requests", START + timedelta(minutes=1), limit=1)
    assert await counters.hit(who, [later, MESSAGES]) == (MESSAGES, 2)


async def test_every_window_is_counted_in_one_statement(
    counters: UsageCounters, engine: AsyncEngine
) -> None:
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        assert await counters.hit(user(), [REQUESTS, MESSAGES]) is None
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert len(statements) == 1
