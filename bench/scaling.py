"""Scaling: list latency and database round trips per turn must not grow with size."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event
from sqlalchemy.engine import make_url

from app.store.store import new_id

SIZES = (10, 1_000, 10_000)
REPEATS = 30


async def seed(database_url: str) -> dict[str, Any]:
    """Users with 10/1,000/10,000 threads, and threads with 10/1,000/10,000 items, by COPY."""
    url = make_url(database_url)
    conn = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database=url.database
    )
    start = datetime(2026, 1, 1)
    seeded: dict[str, Any] = {"thread_users": {}, "item_threads": {}}
    try:
        for size in SIZES:
            user = f"scale-threads-{size}"
            rows = []
            for n in range(size):
                thread_id = new_id("thread")
                created = start + timedelta(seconds=n)
                data = {"id": thread_id, "created_at": created.isoformat(), "title": f"t{n}"}
                rows.append((thread_id, user, created, json.dumps(data)))
            await conn.copy_records_to_table(
                "threads", records=rows, columns=["id", "user_id", "created_at", "data"]
            )
            seeded["thread_users"][size] = user

            owner = f"scale-items-{size}"
            thread_id = new_id("thread")
            thread = {"id": thread_id, "created_at": start.isoformat()}
            await conn.execute(
                "INSERT INTO threads (id, user_id, created_at, data) VALUES ($1, $2, $3, $4)",
                thread_id,
                owner,
                start,
                json.dumps(thread),
            )
            items = []
            for n in range(size):
                item_id = new_id("message")
                created = start + timedelta(seconds=n)
                kind = "user_message" if n % 2 == 0 else "assistant_message"
                data = _item(item_id, thread_id, created, kind, n)
                items.append((item_id, thread_id, owner, kind, created, json.dumps(data)))
            await conn.copy_records_to_table(
                "thread_items",
                records=items,
                columns=["id", "thread_id", "user_id", "type", "created_at", "data"],
            )
            seeded["item_threads"][size] = (owner, thread_id)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return seeded


def _item(item_id: str, thread_id: str, created: datetime, kind: str, n: int) -> dict[str, Any]:
    base = {"id": item_id, "thread_id": thread_id, "created_at": created.isoformat(), "type": kind}
    if kind == "user_message":
        return {
            **base,
            "content": [{"type": "input_text", "text": f"question {n}"}],
            "attachments": [],
            "inference_options": {},
        }
    return {**base, "content": [{"type": "output_text", "text": f"answer {n}", "annotations": []}]}


async def timed_posts(
    client: httpx.AsyncClient, headers: dict[str, str], payload: dict[str, Any]
) -> float:
    """Median milliseconds of `REPEATS` identical requests."""
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        response = await client.post("/chatkit", json=payload, headers=headers)
        samples.append(time.perf_counter() - started)
        response.raise_for_status()
    return 1000 * statistics.median(samples)


async def scaling_figures(
    base_url: str, database_url: str, headers: Callable[[str], dict[str, str]]
) -> dict[str, Any]:
    seeded = await seed(database_url)
    figures: dict[str, Any] = {"threads.list_ms": {}, "items.list_ms": {}}

    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        for size in SIZES:
            user = seeded["thread_users"][size]
            figures["threads.list_ms"][size] = await timed_posts(
                client, headers(user), {"type": "threads.list", "params": {"limit": 20}}
            )
            owner, thread_id = seeded["item_threads"][size]
            figures["items.list_ms"][size] = await timed_posts(
                client,
                headers(owner),
                {"type": "items.list", "params": {"thread_id": thread_id, "limit": 20}},
            )
    print("list latency, p50 of 30 (ms):")
    print(f"{'size':>8}{'threads.list':>14}{'items.list':>12}")
    for size in SIZES:
        print(
            f"{size:>8}{figures['threads.list_ms'][size]:>14.2f}"
            f"{figures['items.list_ms'][size]:>12.2f}"
        )
    figures["round_trips_per_turn"] = await round_trips_per_turn(database_url, seeded)
    return figures


async def round_trips_per_turn(database_url: str, seeded: dict[str, Any]) -> dict[int, int]:
    """Statements one turn sends to the database, for threads of each size (in-process app)."""
    from tests.conftest import make_settings
    from tests.helpers.apps import running_app
    from tests.helpers.chatkit import add_message_req

    settings = make_settings(database_url, model_provider="fake", log_level="WARNING")
    counts: dict[int, int] = {}
    async with running_app(settings) as running:
        executed = 0

        def count(*_: object) -> None:
            nonlocal executed
            executed += 1

        event.listen(running.services.engine.sync_engine, "before_cursor_execute", count)
        for size in SIZES:
            owner, thread_id = seeded["item_threads"][size]
            executed = 0
            response = await running.client.post(
                "/chatkit",
                json=add_message_req(thread_id, "one more"),
                headers={"X-User-Id": owner},
            )
            response.raise_for_status()
            counts[size] = executed
    print("database statements for one turn, by thread length:", counts)
    return counts
