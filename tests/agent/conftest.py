"""Agent fixtures: the app's scripted fake model, reset around every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from app.agent.fake_model import FakeModel


@pytest.fixture
def fake_model(app: FastAPI) -> Iterator[FakeModel]:
    model = app.state.model
    assert isinstance(model, FakeModel)
    model.script.reset()
    yield model
    model.script.reset()
