"""The models and the migrations describe the same schema."""

from __future__ import annotations

from alembic import command

from tests.helpers.database import alembic_config


def test_no_drift_between_models_and_migrations(database_url: str) -> None:
    command.check(alembic_config(database_url))  # raises on any difference
