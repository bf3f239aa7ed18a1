"""MCP servers from configuration, end to end: a real MCP server (the `mcp` package's FastMCP,
`tests/helpers/mcp_server.py`) over stdio and streamable HTTP, the fake model calling its tools
through `POST /chatkit`, and what the server received and the thread holds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from app.agent.fake_model import FakeModel, FakeTurn
from tests.conftest import make_settings
from tests.helpers.agent import assistant_texts, stored_items
from tests.helpers.apps import running_app
from tests.helpers.chatkit import (
    add_message_req,
    create_thread_req,
    created_thread_id,
    stream,
)
from tests.helpers.mcp import (
    FAST_RETRIES,
    HttpMcpServer,
    free_port,
    http_server_toml,
    is_alive,
    read_calls,
    stdio_server_toml,
    wait_for_call,
    write_toml,
)


@pytest.fixture
def _fresh_script() -> None:
    """Each test here runs an app of its own: the shared app's fake model is not needed."""


def fake(app: FastAPI) -> FakeModel:
    model = app.state.model
    assert isinstance(model, FakeModel)
    return model


def notices(events: list[dict[str, Any]]) -> list[str]:
    return [e["message"] for e in events if e["type"] == "notice"]


def progress(events: list[dict[str, Any]]) -> list[str]:
    return [e["text"] for e in events if e["type"] == "progress_update"]


async def ready(client: Any) -> dict[str, Any]:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_until_state(client: Any, name: str, state: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (await ready(client))["mcp_servers"][name] != state:
        assert asyncio.get_running_loop().time() < deadline, f"{name} never became {state}"
        await asyncio.sleep(0.1)


async def test_a_stdio_server_s_tools_are_called_by_the_model(
    postgres_url, tmp_path: Path, user, monkeypatch
):
    """The five-line setup: a [mcp_servers.NAME] table; `/tool {json}` reaches MCP tools."""
    monkeypatch.setenv("TEST_GREETING", "Ahoy")
    calls = tmp_path / "calls.jsonl"
    extra = 'env = { MCP_CALLS_FILE = "%s", TEST_MCP_GREETING = "${TEST_GREETING}" }' % calls
    toml = stdio_server_toml("local", calls).replace(
        f'env = {{ MCP_CALLS_FILE = "{calls}" }}', extra
    )
    toml += 'blocked_tools = ["delete_everything"]\n'
    settings = make_settings(postgres_url, agent_config=write_toml(tmp_path, toml))
    async with running_app(settings) as (app, client):
        assert (await ready(client))["mcp_servers"] == {"local": "connected"}

        events = await stream(client, user.user_id, create_thread_req('/add {"a": 2, "b": 3}'))
        thread_id = created_thread_id(events)
        [call] = read_calls(calls)
        assert (call["tool"], call["arguments"]) == ("add", {"a": 2, "b": 3})
        assert "Using add (local)…" in progress(events)
        assert assistant_texts(await stored_items(app, user.user_id, thread_id)) == [
            "The tool answered: 5"
        ]
        # A hyphenated name; the server's env took its value from ${TEST_GREETING}.
        events = await stream(
            client, user.user_id, add_message_req(thread_id, '/get-greeting {"name": "Ada"}')
        )
        assert read_calls(calls)[-1]["env"] == "Ahoy"
        texts = assistant_texts(await stored_items(app, user.user_id, thread_id))
        assert texts[-1] == "The tool answered: Ahoy, Ada!"
        # A blocked tool is never shown to the model.
        await stream(client, user.user_id, add_message_req(thread_id, "/delete_everything"))
        seen = fake(app).script.calls[-1].tool_names
        assert "add" in seen and "add_task" in seen and "delete_everything" not in seen
        assert [c["tool"] for c in read_calls(calls)] == ["add", "get-greeting"]
        pid = call["pid"]
        assert is_alive(pid)
    # The app's shutdown closed the server's subprocess.
    assert not is_alive(pid)
