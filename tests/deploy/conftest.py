"""The runtime image, laid out as its Dockerfile builds it, released on a database of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from tests.conftest import worker_database_name
from tests.helpers.database import drop_postgres_database, fresh_postgres_database
from tests.helpers.dockerfile import read_runtime_image
from tests.helpers.platforms import ReleasedImage, platform_environment, run_release_step


@pytest.fixture
def released_image(tmp_path: Path) -> Iterator[ReleasedImage]:
    """After the platforms' release step (the migrations) on a fresh database."""
    image = read_runtime_image()
    name = f"{worker_database_name()}_{uuid4().hex[:8]}"
    url = fresh_postgres_database(name)
    root = image.layout(tmp_path / "image")
    run_release_step(root, platform_environment(image, DATABASE_URL=url))
    yield ReleasedImage(image, root, url, tmp_path)
    drop_postgres_database(name)
