"""Startup validation of the token quota and price settings: bad values name their variable."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.config import ConfigurationError, ModelPrice, Settings, load_settings


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def test_token_quotas_by_tier_and_the_default_tier() -> None:
    parsed = settings(token_quota_daily="free=1000,pro=unlimited", token_quota_monthly="*=9000")
    assert parsed.token_quotas("free") == (1000, 9000)
    assert parsed.token_quotas("pro") == (None, 9000)
    assert parsed.token_quotas("team") == (1000, 9000)  # unknown: the default tier's
    assert settings().token_quotas("free") == (None, None)  # unset: no token quota


def test_a_tier_only_a_token_quota_names_is_kept() -> None:
    """`enterprise` is named by the token quota alone: its users get its quota, and the message
    limits' default-tier entry (the tier is unknown there), never the free token quota."""
    parsed = settings(token_quota_daily="free=1000,enterprise=10000000")
    assert parsed.known_tier("enterprise") == "enterprise"
    assert parsed.token_quotas(parsed.known_tier("enterprise")) == (10_000_000, None)
    assert parsed.daily_message_limit("enterprise") == parsed.daily_message_limit("free")
    assert parsed.known_tier("*") == "free"  # the wildcard is never a tier


@pytest.mark.parametrize("name", ["token_quota_daily", "token_quota_monthly"])
def test_a_token_quota_that_leaves_the_default_tier_out_refuses_to_start(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")  # no .env
    monkeypatch.setenv(name.upper(), "pro=5000")
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert f"{name.upper()} names neither AUTH_DEFAULT_TIER (free) nor `*`" in str(error.value)


@pytest.mark.parametrize("value", ["free", "free=lots", "=5", "free=-1"])
def test_bad_token_quotas_name_the_setting(value: str) -> None:
    with pytest.raises(ValidationError, match="token_quota_monthly"):
        settings(token_quota_monthly=value)


def test_prices_per_million_tokens() -> None:
    parsed = settings(usage_prices="gpt-4.1-mini=0.40/0.10/1.60, openrouter/x:free=0/0/0")
    assert parsed.usage_prices == {
        "gpt-4.1-mini": ModelPrice(input=0.4, cached_input=0.1, output=1.6),
        "openrouter/x:free": ModelPrice(input=0, cached_input=0, output=0),
    }


@pytest.mark.parametrize("value", ["gpt=1/2", "gpt", "=1/2/3", "gpt=a/b/c", "gpt=1/-2/3"])
def test_bad_prices_name_the_setting(value: str) -> None:
    with pytest.raises(ValidationError, match="usage_prices"):
        settings(usage_prices=value)
