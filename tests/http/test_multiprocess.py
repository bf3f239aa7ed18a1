"""Two real server processes on one PostgreSQL database share each user's daily message quota."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import IO
from uuid import uuid4

import httpx
import pytest

from app.store.db import PROJECT_ROOT
from tests.helpers.chatkit import create_thread_req

QUOTA = 5
Server = tuple[subprocess.Popen[bytes], IO[bytes]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def server_process(database_url: str, port: int) -> Iterator[Server]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "development",
        "MODEL_PROVIDER": "fake",
        "AUTH_TRUST_USER_HEADERS": "true",
        "RATE_LIMIT_DAILY_MESSAGES": f"free={QUOTA}",
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "0",
        "MAX_CONCURRENT_STREAMS_PER_USER": "0",
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
    # A file, not a pipe: a chatty server must never block on a full pipe.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [*command, "--port", str(port), "--no-access-log", "--log-level", "warning"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process, log
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def wait_until_up(client: httpx.AsyncClient, server: Server) -> None:
    process, log = server
    for _ in range(600):
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError(log.read().decode(errors="replace"))
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("server did not start")


@pytest.fixture
async def two_servers(postgres_url: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    ports = [free_port(), free_port()]
    with (
        server_process(postgres_url, ports[0]) as one,
        server_process(postgres_url, ports[1]) as two,
    ):
        clients = [
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) for port in ports
        ]
        try:
            await asyncio.gather(
                *(wait_until_up(c, p) for c, p in zip(clients, [one, two], strict=True))
            )
            yield clients
        finally:
            for client in clients:
                await client.aclose()


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
