"""`AUTH_METHODS`: which methods run, in which order; a token still wins whatever the order; a
new method plugs in as one class and one line of `METHODS`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.config import ConfigurationError
from app.context import RequestContext
from app.http.auth.base import AuthRequest, Unauthenticated
from app.http.auth.identity import METHODS, Identity
from tests.conftest import make_settings
from tests.helpers.apps import running_app
from tests.helpers.chatkit import create_thread_req, created_thread_id, sse_events
from tests.helpers.jwks import bearer, better_auth_claims, hmac_token

SECRET = "a-shared-secret-of-at-least-32-bytes!"
LIST_THREADS = {"type": "threads.list", "params": {}}


async def thread_ids(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    response = await client.post("/chatkit", json=LIST_THREADS, headers=headers)
    assert response.status_code == 200, response.text
    return [thread["id"] for thread in response.json()["data"]]


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"auth_trust_user_headers": False}, []),
        ({}, ["headers"]),
        ({"auth_jwt_secret": SECRET}, ["hs256", "headers"]),
        ({"auth_jwks_url": "https://app.example.com/api/auth/jwks"}, ["jwks", "headers"]),
        ({"auth_jwt_secret": SECRET, "auth_methods": "headers, hs256"}, ["headers", "hs256"]),
    ],
)
def test_methods_default_to_the_configured_ones(settings: dict[str, Any], names: list[str]):
    assert make_settings("sqlite+aiosqlite:///unused.db", **settings).auth_method_names == names


async def test_a_token_wins_even_when_headers_come_first(postgres_url: str) -> None:
    settings = make_settings(postgres_url, auth_jwt_secret=SECRET, auth_methods="headers,hs256")
    claims = better_auth_claims()
    token = bearer(hmac_token(SECRET.encode(), claims))
    async with running_app(settings) as running:
        client = running.client
        both = {**token, "X-User-Id": "header-user"}
        response = await client.post("/chatkit", json=create_thread_req(), headers=both)
        assert response.status_code == 200, response.text
        thread_id = created_thread_id(sse_events(response))
        assert await thread_ids(client, token) == [thread_id]
        assert await thread_ids(client, {"X-User-Id": "header-user"}) == []
        bad = {"Authorization": "Bearer not-a-token", "X-User-Id": "header-user"}
        refused = await client.post("/chatkit", json=LIST_THREADS, headers=bad)
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_token"


async def test_a_method_left_out_is_not_tried(postgres_url: str) -> None:
    settings = make_settings(postgres_url, auth_jwt_secret=SECRET, auth_methods="headers")
    token = bearer(hmac_token(SECRET.encode(), better_auth_claims()))
    async with running_app(settings) as running:
        response = await running.client.post("/chatkit", json=LIST_THREADS, headers=token)
    assert response.status_code == 401
    assert "does not accept Bearer tokens" in response.json()["message"]


@pytest.mark.parametrize(
    ("methods", "named"),
    [("headers,magic", "AUTH_METHODS"), ("jwks", "AUTH_JWKS_URL"), ("hs256", "AUTH_JWT_SECRET")],
)
def test_an_unknown_or_unconfigured_method_refuses_to_start(methods: str, named: str) -> None:
    settings = make_settings("sqlite+aiosqlite:///unused.db", auth_methods=methods)
    with pytest.raises(ConfigurationError, match=named):
        Identity.from_settings(settings)


async def test_several_audiences_are_each_accepted(postgres_url: str) -> None:
    settings = make_settings(
        postgres_url,
        auth_jwt_secret=SECRET,
        auth_jwt_audience="https://one.example, https://two.example",
    )
    assert settings.auth_jwt_audience == ["https://one.example", "https://two.example"]
    async with running_app(settings) as running:
        for audience, status in [
            ("https://one.example", 200),
            ("https://two.example", 200),
            ("https://three.example", 401),
        ]:
            token = hmac_token(SECRET.encode(), better_auth_claims(aud=audience))
            response = await running.client.post(
                "/chatkit", json=LIST_THREADS, headers=bearer(token)
            )
            assert response.status_code == status, (audience, response.text)


class ApiKeyAuthenticator:
    """What a new method looks like: `X-Api-Key: <user>:<key>` (for this test only)."""

    bearer = False

    def __init__(self, settings: object) -> None:
        self.keys = {"k-123": "api-user"}

    def recognizes(self, request: AuthRequest) -> bool:
        return request.headers.get("x-api-key") is not None

    async def authenticate(self, request: AuthRequest) -> RequestContext:
        user_id = self.keys.get(request.headers["x-api-key"])
        if user_id is None:
            raise Unauthenticated("Unknown API key")
        return request.context(user_id, "api_key", tier="free")


async def test_a_new_method_is_one_class_and_one_line(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(METHODS, "api_key", ApiKeyAuthenticator)
    settings = make_settings(postgres_url, auth_methods="api_key,headers")
    async with running_app(settings) as running:
        client = running.client
        assert await thread_ids(client, {"X-Api-Key": "k-123"}) == []
        wrong = await client.post("/chatkit", json=LIST_THREADS, headers={"X-Api-Key": "nope"})
        assert wrong.status_code == 401
        assert wrong.json()["message"] == "Unknown API key"
        assert await thread_ids(client, {"X-User-Id": "someone"}) == []
