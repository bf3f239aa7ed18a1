"""`scripts/serve.sh` with no settings at all serves the local demo, as a real process.

The first command a new user runs: no `.env`, no model key, no auth settings. Only where the
SQLite file goes (a temporary one) and the port (a free one) are given.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from app.store.db import PROJECT_ROOT
from tests.helpers.chatkit import create_thread_req, done_items, sse_events
from tests.helpers.server import base_environment, free_port, start_server

SERVE = PROJECT_ROOT / "scripts" / "serve.sh"


@pytest.mark.skipif(
    (PROJECT_ROOT / ".env").exists(),
    reason="serve.sh reads this checkout's .env: not a clean start",
)
def test_serve_sh_with_no_settings_streams_a_fake_model_turn_on_loopback(tmp_path: Path) -> None:
    port = free_port()
    env = base_environment(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.db'}", PORT=str(port))
    log = tmp_path / "serve.log"
    with start_server(
        [str(SERVE)], port=port, env=env, cwd=tmp_path, log_path=log, startup_timeout=180
    ) as server:
        ready = httpx.get(f"{server.base_url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert any("fake model" in note for note in ready.json()["demo"])

        with httpx.stream(
            "POST", f"{server.base_url}/chatkit", json=create_thread_req("Hi there"), timeout=60
        ) as response:
            assert response.status_code == 200
            chunks = [chunk for chunk in response.iter_text() if chunk]
        assert len(chunks) > 1  # streamed, not one buffered answer
        events = sse_events(httpx.Response(200, headers=response.headers, text="".join(chunks)))
        reply = done_items(events, "assistant_message")[-1]["content"][0]["text"]
        assert reply.startswith("You said: Hi there")

        text = server.log()
    assert f"Uvicorn running on http://127.0.0.1:{port}" in text  # loopback unless HOST is set
    messages = [json.loads(line)["msg"] for line in text.splitlines() if line.startswith("{")]
    assert len([m for m in messages if m.startswith("Demo model")]) == 1


def test_serve_sh_keeps_the_development_tools() -> None:
    """`uv sync --no-dev` would uninstall ruff, mypy and pytest from the shared virtualenv."""
    commands = [line for line in SERVE.read_text().splitlines() if not line.startswith("#")]
    assert not [line for line in commands if " sync" in line]
    assert any('--host "${HOST:-127.0.0.1}"' in line for line in commands)
