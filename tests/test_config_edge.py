"""Startup validation of the edge settings: production refuses unsafe identity and CORS."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.config import Settings


def settings(**values: Any) -> Settings:
    base: dict[str, Any] = {
        "model_provider": "openai",
        "openai_api_key": "sk-test",
        "attachment_signing_secret": "a" * 32,
    }
    return Settings(_env_file=None, **{**base, **values})


def test_production_without_an_auth_method_names_the_settings() -> None:
    with pytest.raises(ValidationError) as error:
        settings(environment="production")
    message = str(error.value)
    for name in ("AUTH_JWKS_URL", "AUTH_JWT_SECRET", "AUTH_TRUST_USER_HEADERS"):
        assert name in message


@pytest.mark.parametrize(
    "auth",
    [
        {
            "auth_jwks_url": "https://app.example.com/api/auth/jwks",
            "auth_jwt_issuer": "https://app.example.com",
            "auth_jwt_audience": "https://app.example.com",
        },
        {"auth_jwt_secret": "s" * 32},
        {"better_auth_secret": "s" * 32},
        {"auth_trust_user_headers": True, "auth_proxy_secret": "p" * 16},
    ],
)
def test_production_with_one_auth_method_starts(auth: dict[str, object]) -> None:
    assert settings(environment="production", **auth).environment == "production"


def test_production_header_identity_needs_the_proxy_secret() -> None:
    with pytest.raises(ValidationError, match="AUTH_PROXY_SECRET"):
        settings(environment="production", auth_trust_user_headers=True)


def test_development_header_identity_needs_no_secret() -> None:
    assert settings(auth_trust_user_headers=True).auth_proxy_secret is None


def test_production_refuses_cors_star() -> None:
    with pytest.raises(ValidationError, match="CORS_ALLOW_ORIGINS"):
        settings(environment="production", auth_jwt_secret="s" * 32, cors_allow_origins="*")
    assert settings(cors_allow_origins="*").cors_allow_origins == ["*"]


def test_daily_message_quotas_by_tier() -> None:
    parsed = settings(rate_limit_daily_messages="free=5, pro=unlimited, *=2")
    assert parsed.daily_message_limit("free") == 5
    assert parsed.daily_message_limit("pro") is None
    assert parsed.daily_message_limit("enterprise") == 5  # an unnamed tier is the default


def test_a_tier_the_quotas_do_not_name_is_the_default_tier_never_unlimited() -> None:
    parsed = settings(rate_limit_daily_messages="free=5,pro=unlimited")
    assert parsed.daily_message_limit("team") == 5
    assert [parsed.known_tier(t) for t in ("pro", "free", "team", "", None)] == [
        "pro",
        "free",
        "free",
        "free",
        "free",
    ]
    # `*` is the quota of the default tier when it is not listed by name.
    starred = settings(rate_limit_daily_messages="pro=9,*=3", auth_default_tier="basic")
    assert (starred.known_tier("gold"), starred.daily_message_limit("gold")) == ("basic", 3)


def test_quotas_that_leave_the_default_tier_out_refuse_to_start() -> None:
    with pytest.raises(ValidationError) as error:
        settings(rate_limit_daily_messages="pro=5000")
    assert "RATE_LIMIT_DAILY_MESSAGES" in str(error.value)
    assert "AUTH_DEFAULT_TIER" in str(error.value)


@pytest.mark.parametrize("value", ["free", "free=lots", "=5", "free=-1"])
def test_bad_quota_values_name_the_problem(value: str) -> None:
    with pytest.raises(ValidationError, match="rate_limit_daily_messages"):
        settings(rate_limit_daily_messages=value)


def test_limits_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATKIT_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("RATE_LIMIT_DAILY_MESSAGES", "free=3")
    monkeypatch.setenv("CHATKIT_DOMAIN_KEYS", "k1, k2")
    loaded = settings()
    assert loaded.chatkit_max_body_bytes == 4096
    assert loaded.daily_message_limit("free") == 3
    assert loaded.chatkit_domain_keys == ["k1", "k2"]


def test_the_jwks_url_must_be_http() -> None:
    with pytest.raises(ValidationError, match="auth_jwks_url"):
        settings(auth_jwks_url="app.example.com/api/auth/jwks")
    assert settings(auth_jwks_url="").auth_jwks_url is None


def test_production_refuses_a_short_jwt_secret() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        settings(environment="production", better_auth_secret="short")


def test_production_jwks_needs_issuer_and_audience() -> None:
    with pytest.raises(ValidationError) as error:
        settings(environment="production", auth_jwks_url="https://app.example.com/api/auth/jwks")
    assert "AUTH_JWT_ISSUER" in str(error.value) and "AUTH_JWT_AUDIENCE" in str(error.value)


def test_production_openai_needs_a_key() -> None:
    with pytest.raises(ValidationError, match="OPENAI_API_KEY"):
        settings(environment="production", auth_jwt_secret="s" * 32, openai_api_key=None)


def test_production_azure_needs_its_key() -> None:
    azure = {
        "environment": "production",
        "auth_jwt_secret": "s" * 32,
        "model_provider": "azure",
        "azure_openai_endpoint": "https://res.openai.azure.com",
        "openai_api_version": "2025-04-01-preview",
    }
    with pytest.raises(ValidationError, match="MODEL_PROVIDER=azure needs AZURE_OPENAI_API_KEY"):
        settings(**azure)
    assert settings(**azure, azure_openai_api_key="k").model_provider == "azure"
