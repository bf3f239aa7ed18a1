"""CORS: preflight for the headers ChatKit clients send, and headers on streamed responses."""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest

from tests.conftest import make_settings
from tests.helpers.apps import running_app
from tests.helpers.chatkit import create_thread_req, sse_events

ALLOWED = "http://localhost:3000"
OTHER = "https://evil.example.com"
CLIENT_HEADERS = (
    "authorization, content-type, accept-language, x-user-id, x-user-email, x-user-tier, "
    "x-chatkit-domain-key"
)


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": CLIENT_HEADERS,
    }


async def test_preflight_from_an_allowed_origin(client: httpx.AsyncClient) -> None:
    response = await client.options("/chatkit", headers=preflight(ALLOWED))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in CLIENT_HEADERS.split(", "):
        assert header in allowed
    assert "POST" in response.headers["access-control-allow-methods"]


async def test_preflight_from_another_origin_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.options("/chatkit", headers=preflight(OTHER))
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_preflight_needs_no_credentials_nor_domain_key(postgres_url: str) -> None:
    settings = make_settings(postgres_url, chatkit_domain_keys="dk", auth_trust_user_headers=False)
    async with running_app(settings) as running:
        client = running.client
        response = await client.options("/chatkit/attachments", headers=preflight(ALLOWED))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED


@pytest.mark.parametrize(("origin", "allowed"), [(ALLOWED, True), (OTHER, False)])
async def test_streamed_response_headers(
    client: httpx.AsyncClient, origin: str, allowed: bool
) -> None:
    headers = {"Origin": origin, "X-User-Id": f"u-{uuid4().hex[:8]}"}
    async with client.stream(
        "POST", "/chatkit", json=create_thread_req(), headers=headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        await response.aread()
    assert sse_events(response)[0]["type"] == "thread.created"
    if allowed:
        assert response.headers["access-control-allow-origin"] == ALLOWED
        assert "retry-after" in response.headers["access-control-expose-headers"].lower()
    else:
        assert "access-control-allow-origin" not in response.headers


async def test_refusals_carry_cors_headers_so_the_browser_can_read_them(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/chatkit", json=create_thread_req(), headers={"Origin": ALLOWED})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == ALLOWED
