"""Metrics settings at startup: production never serves `/metrics` without a token."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.config import Settings
from tests.conftest import make_settings
from tests.helpers.apps import running_app


def production(**values: Any) -> Settings:
    base: dict[str, Any] = {
        "environment": "production",
        "model_provider": "openai",
        "openai_api_key": "sk-test",
        "attachment_signing_secret": "a" * 32,
        "auth_jwt_secret": "s" * 32,
        "cors_allow_origins": "https://app.example.com",
    }
    return Settings(_env_file=None, **{**base, **values})


def test_production_metrics_need_a_token() -> None:
    with pytest.raises(ValidationError, match="METRICS_ENABLED=true needs METRICS_TOKEN"):
        production(metrics_enabled=True)
    assert production(metrics_enabled=True, metrics_token="t" * 16).metrics_enabled
    assert not production().metrics_enabled  # off by default: nothing to guard


def test_a_short_token_is_refused() -> None:
    with pytest.raises(ValidationError, match="metrics_token"):
        production(metrics_enabled=True, metrics_token="short")


async def test_development_may_serve_metrics_without_a_token(postgres_url) -> None:
    async with running_app(make_settings(postgres_url, metrics_enabled=True)) as running:
        response = await running.client.get("/metrics")
    assert response.status_code == 200
    assert "chatkit_open_streams" in response.text
