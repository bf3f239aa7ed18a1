"""Agent fixtures: the app's scripted fake model, reset around every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from app.agent.fake_model import FakeModel
from app.config import ModelApi


@pytest.fixture
def fake_model(app: FastAPI) -> FakeModel:
    model = app.state.model
    assert isinstance(model, FakeModel)
    return model


@pytest.fixture(autouse=True)
def _fresh_script(fake_model: FakeModel) -> Iterator[None]:
    """No scripted turn leaks from one test into the next."""
    fake_model.script.reset()
    yield
    fake_model.script.reset()


@pytest.fixture(params=["responses", "chat_completions"])
def model_api(request: pytest.FixtureRequest) -> ModelApi:
    """Each test that uses this runs once per API (`MODEL_API`)."""
    value: ModelApi = request.param
    return value
