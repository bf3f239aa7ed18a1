"""Development with nothing configured is a working local demo, and only on this machine.

The fake model answers until a model key is set; identity comes from `X-User-Id` (else
`anonymous`) until any auth setting is; headers without a proxy secret count from loopback
clients only (or `AUTH_HEADERS_ALLOWED_NETWORKS`); production refuses as before.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from app.config import ConfigurationError, Settings, load_settings
from tests.conftest import make_settings
from tests.helpers.apps import RunningApp, running_app
from tests.helpers.chatkit import create_thread_req, done_items, post, sse_events

ELSEWHERE = ("10.0.0.5", 1234)
LIST_THREADS = {"type": "threads.list", "params": {}}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No setting inherited from the environment that runs the tests."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for alias in ("BETTER_AUTH_SECRET", "AWS_REGION"):
        monkeypatch.delenv(alias, raising=False)
    yield monkeypatch


def demo_settings(database_url: str, **values: Any) -> Settings:
    """What `scripts/serve.sh` reads with no settings: only where the database is."""
    return Settings(_env_file=None, database_url=database_url, **values)


def client_from(running: RunningApp, client: tuple[str, int]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=running.app, client=client)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture(scope="module")
async def demo(sqlite_url: str) -> AsyncIterator[RunningApp]:
    async with running_app(demo_settings(sqlite_url, fake_model_delay_ms=0)) as running:
        yield running


@pytest.mark.usefixtures("clean_env")
def test_nothing_configured_is_the_fake_model_and_header_identity() -> None:
    settings = Settings(_env_file=None)
    assert settings.model_provider == "fake" and settings.demo_model
    assert settings.auth_method_names == ["headers"] and settings.demo_identity
    assert [note.split(":")[0] for note in settings.demo_notes()] == [
        "Demo model",
        "Demo identity",
    ]


@pytest.mark.parametrize(
    "name", ["OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_API_KEY", "MODEL_PROVIDER"]
)
def test_a_model_setting_switches_the_fake_model_default_off(
    clean_env: pytest.MonkeyPatch, name: str
) -> None:
    value = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "MODEL_PROVIDER": "openai"}.get(name, "k")
    clean_env.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.model_provider == "openai" and not settings.demo_model
    assert not any(note.startswith("Demo model") for note in settings.demo_notes())
    assert settings.demo_identity  # identity is a separate choice


@pytest.mark.parametrize(
    ("name", "value", "methods"),
    [
        ("AUTH_METHODS", "hs256", ["hs256"]),
        ("AUTH_JWKS_URL", "https://auth.example.com/jwks", ["jwks"]),
        ("AUTH_JWT_SECRET", "s" * 40, ["hs256"]),
        ("BETTER_AUTH_SECRET", "s" * 40, ["hs256"]),
        ("AUTH_TRUST_USER_HEADERS", "false", []),
        ("AUTH_PROXY_SECRET", "p" * 40, []),
    ],
)
def test_an_auth_setting_switches_the_header_default_off(
    clean_env: pytest.MonkeyPatch, name: str, value: str, methods: list[str]
) -> None:
    clean_env.setenv(name, value)
    if name == "AUTH_METHODS":
        clean_env.setenv("AUTH_JWT_SECRET", "s" * 40)
    settings = Settings(_env_file=None)
    assert not settings.demo_identity
    assert settings.auth_method_names == methods
    assert settings.demo_model  # the model is a separate choice


def test_production_refuses_exactly_as_before(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ENVIRONMENT", "production")
    with pytest.raises(ConfigurationError) as refused:
        load_settings()
    message = str(refused.value)
    assert "no auth method" in message
    assert "MODEL_PROVIDER=openai needs OPENAI_API_KEY" in message
    assert "fake" not in message  # no demo default was applied


def test_production_still_refuses_the_fake_model_and_secretless_headers(
    clean_env: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "ENVIRONMENT": "production",
        "MODEL_PROVIDER": "fake",
        "AUTH_TRUST_USER_HEADERS": "true",
    }.items():
        clean_env.setenv(name, value)
    with pytest.raises(ConfigurationError, match="AUTH_TRUST_USER_HEADERS=true needs"):
        load_settings()


def test_allowed_networks_are_validated_naming_the_setting(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AUTH_HEADERS_ALLOWED_NETWORKS", "172.16.0.0/12,not-a-network")
    with pytest.raises(ConfigurationError, match="AUTH_HEADERS_ALLOWED_NETWORKS.*not-a-network"):
        load_settings()


async def test_a_loopback_client_without_headers_chats_as_anonymous(demo: RunningApp) -> None:
    response = await post(demo.client, None, create_thread_req("Hello demo"))
    assert response.status_code == 200, response.text
    replies = done_items(sse_events(response), "assistant_message")
    assert "You said: Hello demo" in replies[-1]["content"][0]["text"]
    thread_id = next(e for e in sse_events(response) if e["type"] == "thread.created")
    thread_id = thread_id["thread"]["id"]

    anonymous = (await post(demo.client, None, LIST_THREADS)).json()["data"]
    alice = (await post(demo.client, "alice", LIST_THREADS)).json()["data"]
    assert thread_id in [thread["id"] for thread in anonymous]
    assert thread_id not in [thread["id"] for thread in alice]  # X-User-Id names the user


@pytest.mark.parametrize("user_id", ["alice", None])
async def test_a_client_elsewhere_gets_a_401_that_says_why(
    demo: RunningApp, user_id: str | None
) -> None:
    async with client_from(demo, ELSEWHERE) as elsewhere:
        response = await post(elsewhere, user_id, create_thread_req("Hi"))
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "unauthorized"
    assert "loopback" in body["message"] and "10.0.0.5" in body["message"]


async def test_a_forwarded_request_does_not_count_as_local(demo: RunningApp) -> None:
    """Behind `--forwarded-allow-ips '*'` the address is whatever the client wrote."""
    for header in ("X-Forwarded-For", "Forwarded"):
        response = await post(demo.client, "alice", LIST_THREADS, **{header: "127.0.0.1"})
        assert response.status_code == 401, response.text
        assert "a proxy" in response.json()["message"]


async def test_ipv6_loopback_counts_as_local(demo: RunningApp) -> None:
    async with client_from(demo, ("::1", 1234)) as local:
        response = await post(local, "alice", LIST_THREADS)
    assert response.status_code == 200, response.text


async def test_readyz_names_the_demo_defaults(demo: RunningApp) -> None:
    body = (await demo.client.get("/readyz")).json()
    assert body["status"] == "ready"
    assert [note.split(":")[0] for note in body["demo"]] == ["Demo model", "Demo identity"]


async def test_the_fake_model_default_is_logged_in_one_line(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The app logs JSON lines to stderr (`app/logging.py`), through its own root handler."""
    async with running_app(demo_settings(sqlite_url)):
        pass
    entries = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    lines = [entry["msg"] for entry in entries if "fake model" in entry["msg"]]
    assert lines == [
        "Demo model: no OPENAI_API_KEY is set, so the deterministic fake model answers "
        "(set OPENAI_API_KEY for real replies)"
    ]


async def test_explicit_headers_in_development_are_local_only_and_never_anonymous(
    sqlite_url: str,
) -> None:
    """`AUTH_TRUST_USER_HEADERS=true` without a secret: loopback only, even in development."""
    async with running_app(make_settings(sqlite_url)) as running:
        assert (await post(running.client, "alice", LIST_THREADS)).status_code == 200
        assert (await post(running.client, None, LIST_THREADS)).status_code == 401
        async with client_from(running, ELSEWHERE) as elsewhere:
            response = await post(elsewhere, "alice", LIST_THREADS)
        assert response.status_code == 401
        assert "loopback" in response.json()["message"]


async def test_allowed_networks_let_the_compose_bridge_in(sqlite_url: str) -> None:
    settings = demo_settings(sqlite_url, auth_headers_allowed_networks="10.0.0.0/8")
    async with running_app(settings) as running:
        async with client_from(running, ELSEWHERE) as bridge:
            assert (await post(bridge, "alice", LIST_THREADS)).status_code == 200
        async with client_from(running, ("192.168.1.9", 1234)) as outside:
            assert (await post(outside, "alice", LIST_THREADS)).status_code == 401


async def test_a_proxy_secret_lets_any_address_in_with_it(sqlite_url: str) -> None:
    secret = "p" * 40
    settings = make_settings(sqlite_url, auth_proxy_secret=secret)
    async with running_app(settings) as running, client_from(running, ELSEWHERE) as proxy:
        ok = await post(proxy, "alice", LIST_THREADS, **{"X-Proxy-Secret": secret})
        assert ok.status_code == 200, ok.text
        assert (await post(proxy, "alice", LIST_THREADS)).status_code == 401
