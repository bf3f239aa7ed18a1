"""Two real server processes on one PostgreSQL database share each user's daily message quota."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from tests.helpers.chatkit import create_thread_req
from tests.helpers.server import app_server

QUOTA = 5


@pytest.fixture
async def two_servers(postgres_url: str, tmp_path: Path) -> AsyncIterator[list[httpx.AsyncClient]]:
    settings = {
        "AUTH_TRUST_USER_HEADERS": "true",
        "RATE_LIMIT_DAILY_MESSAGES": f"free={QUOTA}",
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "0",
        "MAX_CONCURRENT_STREAMS_PER_USER": "0",
        "LOG_LEVEL": "WARNING",
    }
    quiet = ["--no-access-log", "--log-level", "warning"]
    with ExitStack() as stack:
        servers = [
            stack.enter_context(
                app_server(tmp_path, postgres_url, settings, uvicorn_args=quiet, ready=False)
            )
            for _ in range(2)
        ]
        # Both start at once.
        await asyncio.gather(*(asyncio.to_thread(s.wait_until_ready) for s in servers))
        async with AsyncExitStack() as clients:
            yield [
                await clients.enter_async_context(
                    httpx.AsyncClient(base_url=s.base_url, timeout=30)
                )
                for s in servers
            ]


async def create(client: httpx.AsyncClient, user: str) -> httpx.Response:
    return await client.post("/chatkit", json=create_thread_req(), headers={"X-User-Id": user})


async def test_two_processes_share_the_quota(two_servers: list[httpx.AsyncClient]) -> None:
    a, b = two_servers
    user = f"u-{uuid4().hex[:10]}"
    statuses = [(await create(server, user)).status_code for server in [a, b, a, b, a]]
    assert statuses == [200] * QUOTA
    for server in (b, a):
        refused = await create(server, user)
        assert refused.status_code == 429
        assert refused.json()["error"] == "quota_exceeded"
        assert int(refused.headers["retry-after"]) > 0

    # A burst of concurrent messages across both processes: exactly the quota gets through.
    burst_user = f"u-{uuid4().hex[:10]}"
    responses = await asyncio.gather(*(create(s, burst_user) for s in [a, b] * QUOTA))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * QUOTA + [429] * QUOTA
