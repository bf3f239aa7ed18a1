"""What token usage costs a turn: the quota check (one query) and the usage row (one INSERT),
for a user with few and with many turns this month.

Run: `.venv/bin/python -m bench.token_usage` (a fresh PostgreSQL database of its own on the test
server, dropped afterwards).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from datetime import timedelta
from uuid import uuid4

from sqlalchemy import insert, text

from app.config import Settings
from app.store.db import create_engine, utcnow
from app.store.models import TokenUsageRow
from app.store.quotas import Periods
from app.store.tokens import TokenCounts, TokenUsageStore
from tests.conftest import make_settings
from tests.helpers.database import drop_postgres_database, fresh_postgres_database, migrate

DATABASE = "chatkit_bench_token_usage"
TURNS_THIS_MONTH = [100, 10_000, 100_000]
ROUNDS = 200
BATCH = 5_000


async def seed(settings: Settings, user: str, turns: int) -> None:
    """`turns` rows spread over the month so far (and as many for other users)."""
    engine = create_engine(settings)
    now = utcnow()
    span = max(1.0, (now - Periods.at(now).month).total_seconds())
    async with engine.begin() as conn:
        for start in range(0, turns, BATCH):
            rows = [
                {
                    "user_id": owner,
                    "id": f"use_{uuid4().hex}",
                    "thread_id": "thr_bench",
                    "item_id": None,
                    "model": "gpt-bench",
                    "input_tokens": 900,
                    "cached_input_tokens": 300,
                    "output_tokens": 120,
                    "reasoning_tokens": 0,
                    "created_at": now - timedelta(seconds=span * n / turns),
                }
                for n in range(start, min(turns, start + BATCH))
                for owner in (user, f"other-{n % 500}")
            ]
            await conn.execute(insert(TokenUsageRow), rows)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE token_usage"))
    await engine.dispose()


async def measure(settings: Settings) -> None:
    engine = create_engine(settings)
    store = TokenUsageStore(engine)
    now = utcnow()
    periods = Periods.at(now)
    try:
        for turns in TURNS_THIS_MONTH:
            user = f"bench-{turns}"
            await seed(settings, user, turns)
            await store.spent(user, periods.day, periods.month)  # warm
            checks, writes = [], []
            for _ in range(ROUNDS):
                start = time.perf_counter()
                await store.spent(user, periods.day, periods.month)
                checks.append((time.perf_counter() - start) * 1000)
            for _ in range(ROUNDS):
                start = time.perf_counter()
                await store.record(user, "thr_bench", None, "gpt-bench", TokenCounts(9, 3, 1), now)
                writes.append((time.perf_counter() - start) * 1000)
            out(
                f"{turns:>7} turns this month: "
                f"quota check {spread(checks)}, usage row {spread(writes)}"
            )
    finally:
        await engine.dispose()


def spread(ms: list[float]) -> str:
    """Median (10th–90th percentile) of the timings, in ms."""
    deciles = statistics.quantiles(ms, n=10)
    return f"{statistics.median(ms):.2f} ms ({deciles[0]:.2f}–{deciles[-1]:.2f})"


def out(line: str) -> None:
    print(line, flush=True)


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else fresh_postgres_database(DATABASE)
    migrate(url)
    try:
        asyncio.run(measure(make_settings(url)))
    finally:
        if len(sys.argv) == 1:
            drop_postgres_database(DATABASE)


if __name__ == "__main__":
    main()
