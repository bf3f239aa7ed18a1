"""PostgreSQL going away: a 503 with `Retry-After`, or a retryable error event, never a 500.

These tests stop a PostgreSQL server of their own (`own_postgres`), never the shared one, and
serve the app with uvicorn on a real socket, as a deployment does.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import select

from app.store.models import ThreadRow
from tests.conftest import make_settings
from tests.helpers.apps import RunningApp, running_app
from tests.helpers.chatkit import create_thread_req, error_events, headers_for, sse_events
from tests.helpers.database import migrate
from tests.helpers.postgres_cluster import PostgresCluster

LIST_THREADS = {"type": "threads.list", "params": {}}


@pytest.fixture(scope="module")
def outage_url(own_postgres: PostgresCluster) -> str:
    url = own_postgres.create_database("chatkit")
    migrate(url)
    return url


@pytest.fixture
async def live(outage_url: str) -> AsyncIterator[RunningApp]:
    # A slow answer (about 2 s), so that the database can go away in the middle of it.
    settings = make_settings(outage_url, fake_model_tokens=200, fake_model_delay_ms=10)
    async with running_app(settings, socket=True) as running:
        running.client.headers.update(headers_for("outage-user"))
        yield running


async def assert_unavailable(client: httpx.AsyncClient) -> None:
    for payload in (LIST_THREADS, create_thread_req("Anyone there?")):
        response = await client.post("/chatkit", json=payload)
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "database_unavailable"
        assert int(response.headers["retry-after"]) > 0


async def stream_until_first_delta(
    client: httpx.AsyncClient, on_first_delta: Any
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    body = json.dumps(create_thread_req("Tell me a long story"))
    headers = {"Content-Type": "application/json"}
    async with client.stream("POST", "/chatkit", content=body, headers=headers) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
                if len(events) > 1 and "delta" in events[-1].get("update", {}) and on_first_delta:
                    await on_first_delta()
                    on_first_delta = None
    return events


async def test_postgres_stopping_mid_turn_is_an_error_event_then_503s(
    live: RunningApp, own_postgres: PostgresCluster, caplog
) -> None:
    client = live.client
    assert (await client.post("/chatkit", json=LIST_THREADS)).status_code == 200

    async def stop_postgres() -> None:
        await asyncio.to_thread(own_postgres.stop, "fast")

    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            events = await stream_until_first_delta(client, stop_postgres)
            [error] = error_events(events)
            assert error["allow_retry"] is True
            await assert_unavailable(client)
            gc.collect()
        # The failed turn left no task of the SDK's pending.
        assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    finally:
        await asyncio.to_thread(own_postgres.restart)

    # Back up: the pool's dead connections are replaced, and the next turn answers in full.
    for _ in range(3):  # SQLAlchemy discards the dead pool on the first failure it sees
        response = await client.post("/chatkit", json=create_thread_req("Hello again"))
        if response.status_code == 200:
            break
        assert response.status_code == 503, response.text
    assert error_events(sse_events(response)) == []


async def test_a_server_refusing_new_sessions_is_503(
    live: RunningApp, own_postgres: PostgresCluster, outage_url: str
) -> None:
    """During a smart shutdown (or a start-up) PostgreSQL answers 57P03 to new connections."""
    client = live.client
    holder = await asyncpg.connect(outage_url.replace("+asyncpg", ""))  # keeps shutdown waiting
    try:
        await live.services.engine.dispose()  # every request now needs a new connection
        await asyncio.to_thread(own_postgres.stop, "smart", wait=False)
        await assert_unavailable(client)
        for path in ("/chatkit/attachments/atc_0123/content", "/readyz"):
            assert (await client.get(path)).status_code == 503
    finally:
        await holder.close()
        await asyncio.to_thread(own_postgres.restart)


async def test_a_database_bug_is_a_500_not_an_outage(postgres_url: str) -> None:
    """asyncpg's `InterfaceError` for too many query arguments once answered 503."""
    async with running_app(make_settings(postgres_url), socket=True) as running:

        @running.app.get("/test-only/too-many-arguments")
        async def too_many_arguments() -> None:
            ids = [f"thr_{n}" for n in range(40_000)]
            async with running.services.engine.connect() as conn:
                await conn.execute(select(ThreadRow.id).where(ThreadRow.id.in_(ids)))

        response = await running.client.get("/test-only/too-many-arguments")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
