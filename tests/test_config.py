"""Settings: URLs from every platform end up on asyncpg, and bad values name their variable."""

from __future__ import annotations

import re

import pytest

from app.config import ConfigurationError, Settings, load_settings, normalize_database_url
from app.store.db import PROJECT_ROOT

CONTRACT = [
    "DATABASE_URL",
    "PORT",
    "ENVIRONMENT",
    "MODEL_PROVIDER",
    "MODEL_API",
    "OPENAI_BASE_URL",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
    "OPENAI_API_VERSION",
    "CORS_ALLOW_ORIGINS",
    "LOG_LEVEL",
    "PUBLIC_BASE_URL",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CONTRACT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir("/")  # no .env here


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app"),
        ("postgresql://u:p@db/app", "postgresql+asyncpg://u:p@db/app"),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgresql://u@db/app?sslmode=require", "postgresql+asyncpg://u@db/app?ssl=require"),
        (
            "postgres://u@fly-db.flycast:5432/app?sslmode=disable",
            "postgresql+asyncpg://u@fly-db.flycast:5432/app?ssl=disable",
        ),
        (
            "postgresql://u@ep-x.neon.tech/db?sslmode=require&channel_binding=require",
            "postgresql+asyncpg://u@ep-x.neon.tech/db?ssl=require",
        ),
        ("postgres://u@h/d?connect_timeout=10", "postgresql+asyncpg://u@h/d?timeout=10"),
        ("sqlite:///./chatkit.db", "sqlite+aiosqlite:///./chatkit.db"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
    ],
)
def test_database_urls_are_normalized(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_sslmode_never_reaches_asyncpg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/d?sslmode=verify-full&application_name=x")
    url = Settings(_env_file=None).database_url
    assert "sslmode" not in url and "ssl=verify-full" in url and "application_name=x" in url


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://u@h/d"),
        ("DATABASE_URL", "not a url"),
        ("PORT", "eighty"),
        ("ENVIRONMENT", "staging"),
        ("MODEL_PROVIDER", "anthropic"),
        ("MODEL_API", "completions"),
        ("AZURE_OPENAI_ENDPOINT", "res.openai.azure.com"),
        ("LOG_LEVEL", "verbose"),
        ("PUBLIC_BASE_URL", "chat.example.com"),
        ("SSE_BATCH_MS", "-5"),
        ("SSE_BATCH_MS", "a while"),
    ],
)
def test_bad_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert str(error.value).startswith("Invalid configuration:")
    assert f"{variable}: " in str(error.value)


def test_comma_separated_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "https://a.example, https://b.example/")
    monkeypatch.setenv("CHATKIT_DOMAIN_KEYS", "k1,,k2")
    settings = Settings(_env_file=None)
    assert settings.cors_allow_origins == ["https://a.example", "https://b.example"]
    assert settings.chatkit_domain_keys == ["k1", "k2"]


def test_defaults_serve_an_embedded_database() -> None:
    settings = Settings(_env_file=None)
    assert settings.is_sqlite and settings.port == 8000
    assert settings.cors_allow_origins == ["http://localhost:3000", "http://localhost:5173"]


def test_env_example_documents_every_setting_once() -> None:
    """`.env.example` is the configuration contract's template: no setting missing or doubled."""
    text = (PROJECT_ROOT / ".env.example").read_text()
    assigned = re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE)
    documented = [name for name in assigned if name.lower() in Settings.model_fields]
    assert sorted(set(documented)) == sorted(name.upper() for name in Settings.model_fields)
    uncommented = re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE)
    assert len(uncommented) == len(set(uncommented)), "a variable is set twice"


def test_a_copied_env_example_starts_in_development(tmp_path, monkeypatch) -> None:
    """Its empty values (`AUTH_JWT_SECRET=`) mean unset: no empty secret counts as auth."""
    (tmp_path / ".env").write_text((PROJECT_ROOT / ".env.example").read_text())
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.auth_jwt_secret is None and settings.auth_jwks_url is None
    assert settings.auth_proxy_secret is None and settings.openai_api_key is None
    assert settings.production_problems()  # so production would refuse it, naming the gaps


def test_model_choices_are_listed_when_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_API", "chat")
    monkeypatch.setenv("MODEL_PROVIDER", "anthropic")
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert "MODEL_API: Input should be 'responses' or 'chat_completions'" in str(error.value)
    assert "MODEL_PROVIDER: Input should be 'openai', 'azure' or 'fake'" in str(error.value)


def test_model_choices_ignore_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_API", " Chat_Completions")
    monkeypatch.setenv("MODEL_PROVIDER", "OpenAI")
    settings = load_settings()
    assert (settings.model_provider, settings.model_api) == ("openai", "chat_completions")


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ({}, "AZURE_OPENAI_ENDPOINT, OPENAI_API_VERSION"),
        ({"AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com"}, "OPENAI_API_VERSION"),
        ({"OPENAI_API_VERSION": "2025-04-01-preview"}, "AZURE_OPENAI_ENDPOINT"),
    ],
)
def test_azure_needs_its_endpoint_and_api_version(
    monkeypatch: pytest.MonkeyPatch, present: dict[str, str], missing: str
) -> None:
    monkeypatch.setenv("MODEL_PROVIDER", "azure")
    for name, value in present.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=f"MODEL_PROVIDER=azure needs {missing}$"):
        load_settings()


def test_azure_refuses_an_openai_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_PROVIDER", "azure")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com/")
    monkeypatch.setenv("OPENAI_API_VERSION", "2025-04-01-preview")
    assert load_settings().azure_openai_endpoint == "https://res.openai.azure.com"

    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1")
    with pytest.raises(ConfigurationError, match="unset OPENAI_BASE_URL"):
        load_settings()
