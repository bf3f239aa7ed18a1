"""`GET /playground`: when it is served, its security headers, and what it tells the page.

What the page does in a browser is tested in tests/browser/test_playground.py.
"""

from __future__ import annotations

import json

import pytest

from app.config import ConfigurationError, Settings, load_settings
from tests.conftest import make_settings
from tests.helpers.apps import running_app

RESOURCES = {
    "/playground": "text/html",
    "/playground/app.js": "text/javascript",
    "/playground/app.css": "text/css",
    "/playground/config.json": "application/json",
}
PRODUCTION = {
    "environment": "production",
    "model_provider": "openai",
    "openai_api_key": "sk-test-unused",
    "auth_jwt_secret": "j" * 32,
    "auth_trust_user_headers": False,
    "attachment_signing_secret": "s" * 32,
}


async def test_served_in_development_with_strict_headers(postgres_url: str) -> None:
    settings = make_settings(postgres_url, playground_token_url="https://app.example.com/api/t")
    async with running_app(settings) as running:
        client = running.client
        for path, media_type in RESOURCES.items():
            response = await client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"].startswith(media_type), path
            assert response.headers["x-content-type-options"] == "nosniff"
            csp = dict(
                directive.split(" ", 1)
                for directive in response.headers["content-security-policy"].split("; ")
            )
            assert csp == {
                "default-src": "'none'",
                "script-src": "'self' https://cdn.platform.openai.com",
                "frame-src": "https://cdn.platform.openai.com",
                "connect-src": "'self' https://cdn.platform.openai.com https://app.example.com",
                "style-src": "'self' 'unsafe-inline'",
                "img-src": "'self' data: blob:",
                "base-uri": "'none'",
                "form-action": "'none'",
                "frame-ancestors": "'none'",
            }
        page = (await client.get("/playground")).text
    assert '<script src="https://cdn.platform.openai.com/deployments/chatkit/chatkit.js"' in page
    assert "<script>" not in page  # no inline script: the CSP allows none


@pytest.mark.parametrize(
    ("overrides", "served"),
    [
        ({}, False),
        ({"playground_enabled": False}, False),
        ({"playground_enabled": True}, True),
    ],
)
async def test_production_serves_it_only_when_enabled(
    postgres_url: str, overrides: dict[str, object], served: bool
) -> None:
    settings = make_settings(postgres_url, **PRODUCTION, **overrides)
    async with running_app(settings) as running:
        client = running.client
        statuses = {(await client.get(path)).status_code for path in RESOURCES}
    assert statuses == ({200} if served else {404})


async def test_development_can_turn_it_off(postgres_url: str) -> None:
    async with running_app(make_settings(postgres_url, playground_enabled=False)) as running:
        client = running.client
        assert (await client.get("/playground")).status_code == 404


async def config_of(settings: Settings) -> dict[str, object]:
    async with running_app(settings) as running:
        client = running.client
        response = await client.get("/playground/config.json")
    assert response.status_code == 200
    config: dict[str, object] = response.json()
    return config


async def test_config_for_development_headers(postgres_url: str) -> None:
    config = await config_of(make_settings(postgres_url))
    assert config == {
        "apiUrl": "/chatkit",
        "domainKey": "local-dev",
        "model": "fake",
        "identity": {"userHeader": True, "bearer": False, "tokenUrl": None},
        "domainKeyRequired": False,
        "attachments": {
            "maxBytes": 20 * 1024 * 1024,
            "maxCount": 10,
            "accept": {"image/*": [], "application/pdf": [], "text/*": []},
        },
    }


async def test_config_for_tokens_names_no_secret(postgres_url: str) -> None:
    settings = make_settings(
        postgres_url,
        **{**PRODUCTION, "auth_trust_user_headers": True},
        playground_enabled=True,
        playground_token_url="https://app.example.com/api/auth/token",
        playground_domain_key="domain_pk_123",
        auth_proxy_secret="p" * 32,
        chatkit_domain_keys="key-one,key-two",
        attachment_allowed_mime_types="*/*",
    )
    config = await config_of(settings)
    # Header identity needs the proxy's secret here, which a page must never hold.
    assert config["identity"] == {
        "userHeader": False,
        "bearer": True,
        "tokenUrl": "https://app.example.com/api/auth/token",
    }
    assert (config["domainKey"], config["domainKeyRequired"]) == ("domain_pk_123", True)
    assert config["attachments"] == {"maxBytes": 20 * 1024 * 1024, "maxCount": 10, "accept": None}
    text = json.dumps(config)
    for secret in ("j" * 32, "s" * 32, "p" * 32, "sk-test-unused", "key-one", "key-two"):
        assert secret not in text


def test_token_url_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    monkeypatch.setenv("PLAYGROUND_TOKEN_URL", "app.example.com/api/auth/token")
    with pytest.raises(ConfigurationError, match="PLAYGROUND_TOKEN_URL: .*http"):
        load_settings()


def test_empty_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAYGROUND_ENABLED", "")  # as copied from .env.example
    monkeypatch.setenv("PLAYGROUND_TOKEN_URL", "")
    settings = Settings(_env_file=None)
    assert (settings.playground_enabled, settings.playground_token_url) == (None, None)
    assert settings.playground_on  # development
