"""The server started exactly as the image's CMD starts it, after the platforms' migration step.

Nothing is duplicated from the Dockerfile: the command, its environment and the files the image
contains are read from it (tests/helpers/dockerfile.py).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.helpers.chatkit import create_thread_req, event_types, sse_events
from tests.helpers.dockerfile import RuntimeImage, read_runtime_image
from tests.helpers.platforms import platform_environment, run_release_step
from tests.helpers.server import free_port, start_server


def platform_urls(url: str) -> tuple[str, str]:
    """The same database as Railway (`postgresql://`) and Fly (`postgres://…?sslmode=disable`)
    hand it over."""
    rest = url.split("://", 1)[1]
    return f"postgresql://{rest}", f"postgres://{rest}?sslmode=disable"


def run_healthcheck(image: RuntimeImage, root: Path, env: dict[str, str]) -> int:
    return subprocess.run(image.healthcheck, cwd=root, env=env, timeout=30).returncode


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    return read_runtime_image().layout(tmp_path / "image")


# One worker: uvicorn itself, which re-raises SIGTERM once it has shut down, as it should.
# Two (WEB_CONCURRENCY): app.serve's supervisor, which exits 0 once both have.
@pytest.mark.parametrize(("workers", "status_after_sigterm"), [(1, -signal.SIGTERM), (2, 0)])
def test_image_command_serves_a_chatkit_turn_on_port_after_release_migration(
    workers: int,
    status_after_sigterm: int,
    image_root: Path,
    tmp_path: Path,
    scratch_postgres: Callable[[str], str],
) -> None:
    image = read_runtime_image()
    railway_url, fly_url = platform_urls(scratch_postgres(f"image_{workers}"))
    run_release_step(image_root, platform_environment(image, DATABASE_URL=fly_url))

    port = free_port()
    env = platform_environment(
        image, DATABASE_URL=railway_url, PORT=str(port), WEB_CONCURRENCY=str(workers)
    )
    with start_server(
        image.cmd, port=port, env=env, cwd=image_root, log_path=tmp_path / "server.log"
    ) as server:
        server.wait_for_listeners(workers)  # every worker up, not only the one that answered
        assert run_healthcheck(image, image_root, env) == 0
        ready = httpx.get(f"{server.base_url}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text  # the release step left the schema at head

        response = httpx.post(
            f"{server.base_url}/chatkit",
            json=create_thread_req("Hello from the image"),
            headers={"X-User-Id": "deploy-user"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["content-encoding"] == "none"
        events = sse_events(response)
        assert event_types(events)[0] == "thread.created"
        assert any(
            event["type"] == "thread.item.done" and event["item"]["type"] == "assistant_message"
            for event in events
        ), events

    # A clean shutdown on SIGTERM, of every worker.
    assert server.process.returncode == status_after_sigterm, server.log()
    assert server.log().count("Application shutdown complete") == workers, server.log()
    assert run_healthcheck(image, image_root, env) != 0
