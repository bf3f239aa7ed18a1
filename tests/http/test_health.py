"""Platform probes."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import make_settings
from tests.helpers.apps import running_app


async def probe(database_url: str, path: str) -> httpx.Response:
    async with running_app(make_settings(database_url)) as running:
        return await running.client.get(path)


async def test_healthz(client) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_on_a_migrated_database(client) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"


async def test_readyz_on_an_unmigrated_database(scratch_postgres) -> None:
    response = await probe(await asyncio.to_thread(scratch_postgres, "unmigrated"), "/readyz")
    assert response.status_code == 503
    assert "alembic upgrade head" in response.json()["reason"]


async def test_readyz_when_the_database_is_down() -> None:
    response = await probe("postgresql://postgres@127.0.0.1:1/none", "/readyz")
    assert response.status_code == 503
    assert response.json()["reason"].startswith("database unreachable")


async def test_healthz_does_not_need_the_database() -> None:
    response = await probe("postgresql://postgres@127.0.0.1:1/none", "/healthz")
    assert response.status_code == 200


async def test_protocol_requests_get_503_while_the_database_is_down() -> None:
    async with running_app(make_settings("postgresql://postgres@127.0.0.1:1/none")) as running:
        response = await running.client.post(
            "/chatkit",
            json={"type": "threads.list", "params": {}},
            headers={"X-User-Id": "someone"},
        )
    assert response.status_code == 503
    assert response.json()["error"] == "database_unavailable"
    assert response.headers["retry-after"] == "5"
