"""MCP servers from configuration, end to end: a real MCP server (the `mcp` package's FastMCP,
`tests/helpers/mcp_server.py`) over stdio and streamable HTTP, the fake model calling its tools
through `POST /chatkit`, and what the server received and the thread holds."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx2
import pytest

from app.agent.mcp import CALLER_ID, caller_id_hook
from tests.conftest import make_settings
from tests.helpers.agent import assistant_texts, stored_items
from tests.helpers.apps import RunningApp, running_app
from tests.helpers.chatkit import (
    add_message_req,
    create_thread_req,
    created_thread_id,
    done_items,
    error_events,
    stream,
)
from tests.helpers.mcp import (
    FAST_RETRIES,
    HttpMcpServer,
    http_server_toml,
    is_alive,
    read_calls,
    stdio_server_toml,
    wait_for_call,
    write_toml,
)
from tests.helpers.server import free_port


def notices(events: list[dict[str, Any]]) -> list[str]:
    return [e["message"] for e in events if e["type"] == "notice"]


def progress(events: list[dict[str, Any]]) -> list[str]:
    return [e["text"] for e in events if e["type"] == "progress_update"]


async def ready(client: Any) -> dict[str, Any]:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_until_state(client: Any, name: str, state: str) -> None:
    """Poll /readyz (up to 30 s) until the server `name` is in `state`."""
    async with asyncio.timeout(30):
        while True:
            if (await ready(client))["mcp_servers"][name] == state:
                return
            await asyncio.sleep(0.1)


def tool_outputs(running: RunningApp) -> list[str]:
    """What the model was told each tool returned, in its latest call."""
    return [
        str(item["output"])
        for item in running.fake_model.script.calls[-1].input
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    ]


async def texts_of(running: RunningApp, user_id: str, thread_id: str) -> list[str]:
    return assistant_texts(await stored_items(running.services, user_id, thread_id))


async def test_a_stdio_server_s_tools_are_called_by_the_model(
    postgres_url, tmp_path: Path, user, monkeypatch
):
    """The five-line setup: a [mcp_servers.NAME] table; `/tool {json}` reaches MCP tools."""
    monkeypatch.setenv("TEST_GREETING", "Ahoy")
    calls = tmp_path / "calls.jsonl"
    env = f'env = {{ MCP_CALLS_FILE = "{calls}", TEST_MCP_GREETING = "${{TEST_GREETING}}" }}'
    toml = stdio_server_toml("local", calls).replace(f'env = {{ MCP_CALLS_FILE = "{calls}" }}', env)
    toml += 'blocked_tools = ["delete_everything"]\n'
    settings = make_settings(postgres_url, agent_config=write_toml(tmp_path, toml))
    async with running_app(settings) as running:
        client = running.client
        assert (await ready(client))["mcp_servers"] == {"local": "connected"}

        events = await stream(client, user.user_id, create_thread_req('/add {"a": 2, "b": 3}'))
        thread_id = created_thread_id(events)
        [call] = read_calls(calls)
        assert (call["tool"], call["arguments"]) == ("add", {"a": 2, "b": 3})
        assert "Using add (local)…" in progress(events)
        assert await texts_of(running, user.user_id, thread_id) == ["The tool answered: 5"]
        # A hyphenated name; the server's env took its value from ${TEST_GREETING}.
        events = await stream(
            client, user.user_id, add_message_req(thread_id, '/get-greeting {"name": "Ada"}')
        )
        assert read_calls(calls)[-1]["env"] == "Ahoy"
        texts = await texts_of(running, user.user_id, thread_id)
        assert texts[-1] == "The tool answered: Ahoy, Ada!"
        # A blocked tool is never shown to the model.
        await stream(client, user.user_id, add_message_req(thread_id, "/delete_everything"))
        seen = running.fake_model.script.calls[-1].tool_names
        assert "add" in seen and "add_task" in seen and "delete_everything" not in seen
        assert [c["tool"] for c in read_calls(calls)] == ["add", "get-greeting"]
        pid = call["pid"]
        assert is_alive(pid)
    # The app's shutdown closed the server's subprocess, and its task.
    assert not is_alive(pid)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("mcp server")]


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_an_http_server_gets_each_caller_s_id_and_the_configured_header(
    postgres_url, tmp_path: Path, user, other_user, monkeypatch, capsys, transport
):
    monkeypatch.setenv("TEST_MCP_SECRET", "s3cr3t")
    calls = tmp_path / "calls.jsonl"
    extra = f"""
type = "{transport}"
headers = {{ X-Test-Secret = "${{TEST_MCP_SECRET}}" }}
forward_user_id = true
allowed_tools = ["add", "slow"]
"""
    async with HttpMcpServer(free_port(), calls, transport) as server:
        toml = f'[mcp_servers.remote]\nurl = "{server.url}"\n{extra}'
        settings = make_settings(postgres_url, agent_config=write_toml(tmp_path, toml))
        async with running_app(settings) as running:
            client = running.client
            for caller in (user.user_id, other_user.user_id):
                events = await stream(client, caller, create_thread_req('/add {"a": 1, "b": 2}'))
                thread_id = created_thread_id(events)
                assert await texts_of(running, caller, thread_id) == ["The tool answered: 3"]
            seen = running.fake_model.script.calls[-1].tool_names
            assert set(seen) >= {"add", "slow", "add_task"} and "fail" not in seen

    received = [(call["user_id"], call["secret"]) for call in read_calls(calls)]
    # One connection for everyone, each call with its own caller's id.
    assert received == [(user.user_id, "s3cr3t"), (other_user.user_id, "s3cr3t")]
    # The configuration was logged once, with the reference rather than the secret.
    logged = [
        line for line in capsys.readouterr().err.splitlines() if "Agent configuration" in line
    ]
    assert len(logged) == 1 and "${TEST_MCP_SECRET}" in logged[0] and "s3cr3t" not in logged[0]


async def test_a_server_down_at_start_comes_up_later_and_can_go_again(
    postgres_url, tmp_path: Path, user
):
    """Down: chat works without its tools, /readyz says degraded (200). Up: its tools appear.
    Killed: the failed call is a notice and a failed call for the model; chat goes on."""
    calls, port = tmp_path / "calls.jsonl", free_port()
    toml = FAST_RETRIES + http_server_toml("remote", port)
    settings = make_settings(postgres_url, agent_config=write_toml(tmp_path, toml))
    async with running_app(settings) as running:
        client = running.client
        body = await ready(client)
        assert body["status"] == "ready" and body["degraded"] == ["remote"]
        assert body["mcp_servers"] == {"remote": "down"}
        events = await stream(client, user.user_id, create_thread_req('/add {"a": 1, "b": 1}'))
        thread_id = created_thread_id(events)
        assert "add" not in running.fake_model.script.calls[-1].tool_names
        assert (await texts_of(running, user.user_id, thread_id))[0].startswith("You said: /add")

        server = HttpMcpServer(port, calls)
        await server.start()
        await wait_until_state(client, "remote", "connected")
        assert (await ready(client))["degraded"] == []
        await stream(client, user.user_id, add_message_req(thread_id, '/add {"a": 1, "b": 1}'))
        assert [call["tool"] for call in read_calls(calls)] == ["add"]
        assert (await texts_of(running, user.user_id, thread_id))[-1] == "The tool answered: 2"

        await server.kill()
        events = await stream(
            client, user.user_id, add_message_req(thread_id, '/add {"a": 2, "b": 2}')
        )
        assert notices(events) == ["The tool add is unreachable right now."]
        [output] = tool_outputs(running)
        assert output.startswith("Error: the tool call failed: add is unreachable right now")
        await wait_until_state(client, "remote", "down")
        await stream(client, user.user_id, add_message_req(thread_id, "Still there?"))
        texts = await texts_of(running, user.user_id, thread_id)
        assert texts[-1].startswith("You said: Still there?")


async def test_a_stdio_server_killed_mid_call_is_restarted(postgres_url, tmp_path: Path, user):
    calls = tmp_path / "calls.jsonl"
    toml = FAST_RETRIES + stdio_server_toml("local", calls, "timeout_seconds = 30")
    settings = make_settings(postgres_url, agent_config=write_toml(tmp_path, toml))
    async with running_app(settings) as running:
        client = running.client
        turn = asyncio.create_task(
            stream(client, user.user_id, create_thread_req('/slow {"seconds": 20}'))
        )
        call = await wait_for_call(calls, "slow")
        os.kill(call["pid"], signal.SIGKILL)
        events = await turn

        assert notices(events) == ["The tool slow is unreachable right now."]
        thread_id = created_thread_id(events)
        [text] = await texts_of(running, user.user_id, thread_id)
        assert text.startswith(
            "The tool answered: Error: the tool call failed: slow is unreachable"
        )
        await wait_until_state(client, "local", "down")
        await wait_until_state(client, "local", "connected")
        await stream(client, user.user_id, add_message_req(thread_id, '/add {"a": 4, "b": 4}'))
        assert (await texts_of(running, user.user_id, thread_id))[-1] == "The tool answered: 8"
        assert read_calls(calls)[-1]["pid"] != call["pid"]


async def test_a_slow_call_an_error_result_and_an_unapproved_tool_end_readably(
    postgres_url, tmp_path: Path, user
):
    calls = tmp_path / "calls.jsonl"
    toml = stdio_server_toml(
        "local", calls, 'timeout_seconds = 1\nrequire_approval = ["delete_everything"]'
    )
    settings = make_settings(postgres_url, agent_config=write_toml(tmp_path, toml))
    async with running_app(settings) as running:
        client = running.client
        events = await stream(client, user.user_id, create_thread_req('/slow {"seconds": 3}'))
        thread_id = created_thread_id(events)
        assert notices(events) == ["The tool slow did not answer in time."]
        [output] = tool_outputs(running)
        assert output.startswith("Error: the tool call failed: slow did not answer in time")

        events = await stream(
            client, user.user_id, add_message_req(thread_id, '/fail {"message": "disk full"}')
        )
        # An error result is the tool's answer: the model reads it and tells the user.
        assert (await texts_of(running, user.user_id, thread_id))[-1] == (
            "The tool answered: Error executing tool fail: disk full"
        )

        # A tool that needs approval waits for the user (tests/agent/test_approvals.py).
        events = await stream(
            client, user.user_id, add_message_req(thread_id, "/delete_everything")
        )
        assert error_events(events) == []
        [card] = done_items(events, "widget")
        assert card["widget"]["children"][0]["children"][0]["value"] == "Approval needed"

        await stream(client, user.user_id, add_message_req(thread_id, '/add {"a": 1, "b": 2}'))
        assert (await texts_of(running, user.user_id, thread_id))[-1] == "The tool answered: 3"
        assert (await ready(client))["mcp_servers"] == {"local": "connected"}
        assert [call["tool"] for call in read_calls(calls)] == ["slow", "fail", "add"]
        assert len({call["pid"] for call in read_calls(calls)}) == 1


async def test_the_caller_id_header_is_the_turn_s_own() -> None:
    hook = caller_id_hook("X-User-Id")
    request = httpx2.Request("POST", "http://mcp.test/mcp", headers={"X-User-Id": "forged"})
    token = CALLER_ID.set("usér 1")
    try:
        await hook(request)
    finally:
        CALLER_ID.reset(token)
    assert request.headers["X-User-Id"] == "us%C3%A9r%201"
    await hook(request)  # outside a turn: no id at all
    assert "X-User-Id" not in request.headers
