"""Agent fixtures: the model API a test runs against."""

from __future__ import annotations

import pytest

from app.config import ModelApi


@pytest.fixture(params=["responses", "chat_completions"])
def model_api(request: pytest.FixtureRequest) -> ModelApi:
    """Each test that uses this runs once per API (`MODEL_API`)."""
    value: ModelApi = request.param
    return value
