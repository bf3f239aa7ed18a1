"""Platform probes."""

from __future__ import annotations

from pathlib import Path

import httpx

from app.main import create_app
from tests.conftest import make_settings


async def probe(database_url: str, path: str) -> httpx.Response:
    app = create_app(make_settings(database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(path)


async def test_healthz(client) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_on_a_migrated_database(client) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"


async def test_readyz_on_an_unmigrated_database(tmp_path: Path) -> None:
    response = await probe(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", "/readyz")
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
    app = create_app(make_settings("postgresql://postgres@127.0.0.1:1/none"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post(
                "/chatkit",
                json={"type": "threads.list", "params": {}},
                headers={"X-User-Id": "someone"},
            )
    assert response.status_code == 503
    assert response.json()["error"] == "database_unavailable"
    assert response.headers["retry-after"] == "5"
