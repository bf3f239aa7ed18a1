"""Trusted identity headers: off by default, a proxy secret outside development, Bearer first."""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest

from app.config import Settings
from tests.conftest import make_settings
from tests.helpers.apps import running_app
from tests.helpers.chatkit import create_thread_req, created_thread_id, sse_events
from tests.helpers.jwks import JwksServer, bearer, better_auth_claims, generate_key

PROXY_SECRET = "proxy-secret-0123456789"
LIST_THREADS = {"type": "threads.list", "params": {}}


def production(postgres_url: str, **overrides: object):
    """Production settings; the fake model is not allowed there, nor needed for threads.list."""
    values: dict[str, object] = {
        "environment": "production",
        "model_provider": "openai",
        "openai_api_key": "sk-test-unused",
        "auth_trust_user_headers": True,
        "auth_proxy_secret": PROXY_SECRET,
        "attachment_signing_secret": "s" * 32,
    }
    values.update(overrides)
    return make_settings(postgres_url, **values)


def user_headers(user_id: str | None = None, **extra: str) -> dict[str, str]:
    return {"X-User-Id": user_id or f"u-{uuid4().hex[:10]}", **extra}


async def list_threads(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/chatkit", json=LIST_THREADS, headers=headers)


async def test_headers_are_ignored_by_default(postgres_url: str) -> None:
    settings = make_settings(postgres_url, auth_trust_user_headers=False)
    async with running_app(settings) as running:
        client = running.client
        response = await list_threads(client, user_headers(**{"X-User-Tier": "pro"}))
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert Settings.model_fields["auth_trust_user_headers"].default is False


@pytest.mark.parametrize(
    "user_id", ["a\x00b", "a\x1bb", "a\x7fb", "a\x85b", " ", "u" * 256], ids=repr
)
async def test_an_unprintable_or_overlong_user_id_is_401(postgres_url: str, user_id: str) -> None:
    async with running_app(make_settings(postgres_url)) as running:
        client = running.client
        response = await client.post(
            "/chatkit", json=LIST_THREADS, headers=[(b"x-user-id", user_id.encode("latin-1"))]
        )
    assert response.status_code == 401, response.text
    assert "X-User-Id" in response.json()["message"]


async def test_development_accepts_headers_without_a_secret(postgres_url: str) -> None:
    async with running_app(make_settings(postgres_url)) as running:
        client = running.client
        response = await list_threads(client, user_headers())
    assert response.status_code == 200
    assert response.json()["data"] == []


@pytest.mark.parametrize(
    ("secret", "status"),
    [(None, 401), ("", 401), ("wrong", 401), (PROXY_SECRET + "x", 401), (PROXY_SECRET, 200)],
)
async def test_production_needs_the_proxy_secret(
    postgres_url: str, secret: str | None, status: int
) -> None:
    extra = {} if secret is None else {"X-Proxy-Secret": secret}
    async with running_app(production(postgres_url)) as running:
        client = running.client
        response = await list_threads(client, user_headers(**extra))
    assert response.status_code == status, response.text
    if status == 401:
        assert "X-Proxy-Secret" in response.json()["message"]


async def test_forged_headers_cannot_reach_another_users_thread(postgres_url: str) -> None:
    victim = f"victim-{uuid4().hex[:8]}"
    async with running_app(production(postgres_url)) as running:
        client = running.client
        proxied = user_headers(victim, **{"X-Proxy-Secret": PROXY_SECRET})
        assert (await list_threads(client, proxied)).status_code == 200
        # A browser forging the victim's id (and tier) without the secret gets nothing.
        forged = await list_threads(client, user_headers(victim, **{"X-User-Tier": "pro"}))
    assert forged.status_code == 401
    assert forged.json() == {
        "error": "unauthorized",
        "message": "Identity headers need a valid X-Proxy-Secret",
    }


async def test_a_configured_secret_is_checked_in_development_too(postgres_url: str) -> None:
    settings = make_settings(postgres_url, auth_proxy_secret=PROXY_SECRET)
    async with running_app(settings) as running:
        client = running.client
        assert (await list_threads(client, user_headers())).status_code == 401
        ok = await list_threads(client, user_headers(**{"X-Proxy-Secret": PROXY_SECRET}))
        assert ok.status_code == 200


@pytest.mark.parametrize("user_id", ["", "   ", "x" * 256])
async def test_bad_user_ids_are_refused(postgres_url: str, user_id: str) -> None:
    async with running_app(make_settings(postgres_url)) as running:
        client = running.client
        response = await list_threads(client, {"X-User-Id": user_id})
    assert response.status_code == 401


async def test_bearer_wins_over_headers_and_a_bad_token_is_401(postgres_url: str) -> None:
    key = generate_key("EdDSA")
    server = await JwksServer().start()
    server.keys = [key.jwk]
    settings = make_settings(postgres_url, auth_jwks_url=server.url)
    try:
        async with running_app(settings) as running:
            client = running.client
            claims = better_auth_claims()
            header_user = f"h-{uuid4().hex[:8]}"
            both = {**bearer(key.sign(claims)), **user_headers(header_user)}
            response = await client.post("/chatkit", json=create_thread_req(), headers=both)
            assert response.status_code == 200
            thread_id = created_thread_id(sse_events(response))
            # The thread belongs to the token's user, not to the header's.
            mine = await list_threads(client, bearer(key.sign(claims)))
            assert [t["id"] for t in mine.json()["data"]] == [thread_id]
            theirs = await list_threads(client, user_headers(header_user))
            assert theirs.json()["data"] == []
            # A present but invalid token is a 401 even with valid identity headers.
            bad = {"Authorization": "Bearer not-a-token", **user_headers(header_user)}
            assert (await list_threads(client, bad)).status_code == 401
    finally:
        await server.stop()


async def test_health_probes_stay_public(postgres_url: str) -> None:
    async with running_app(production(postgres_url)) as running:
        client = running.client
        assert (await client.get("/healthz")).status_code == 200
        assert (
            await client.get("/readyz", headers={"Authorization": "Bearer junk"})
        ).status_code == 200
