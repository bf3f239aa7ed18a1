"""Tools that ask first, through `POST /chatkit`: the run pauses on `delete_task` (which needs
approval), the thread shows an approval widget, and its Approve / Reject action resumes the run.

Real parts: the Agents SDK's Runner drives the scripted model; the approvals live in PostgreSQL
and in SQLite (each test runs on both).
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from chatkit.types import AssistantMessageItem, UserMessageItem, WidgetItem
from pydantic import ValidationError
from sqlalchemy import select, update

from app.agent.approvals import APPROVE_ACTION, REJECT_ACTION, REJECTED, readable_arguments
from app.agent.fake_model import FakeModel, FakeTurn
from app.config import Settings
from app.services import Services
from app.store.models import ApprovalRow
from app.store.tasks import Task
from tests.agent.test_mcp import wait_until_state
from tests.agent.test_token_usage import usage_rows
from tests.conftest import make_settings
from tests.helpers.agent import assistant_texts, stored_items
from tests.helpers.apps import running_app
from tests.helpers.chatkit import (
    add_message_req,
    create_thread_req,
    created_thread_id,
    custom_action_req,
    done_items,
    error_events,
    post,
    sse_events,
    stream,
)
from tests.helpers.mcp import (
    FAST_RETRIES,
    HttpMcpServer,
    http_server_toml,
    read_calls,
    stdio_server_toml,
    write_toml,
)
from tests.helpers.server import free_port


def card_parts(widget: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    """An approval card's badge, its lines (tool names and arguments) and its buttons' labels."""
    header, _divider, calls, *rest = widget["children"]
    badge = header["children"][2]["label"]
    lines = [child["value"] for child in calls["children"]]
    buttons = [button["label"] for part in rest for button in part.get("children", [])]
    return badge, lines, buttons


def buttons(widget: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each button's label → its action."""
    *_, row = widget["children"]
    return {button["label"]: button["onClickAction"] for button in row["children"]}


def tool_results(fake_model: FakeModel) -> list[str]:
    """What the model was told each tool returned, in its latest call."""
    return [
        str(item["output"])
        for item in fake_model.script.calls[-1].input
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    ]


async def approval_row(services: Services, approval_id: str) -> Any:
    async with services.engine.connect() as conn:
        return (await conn.execute(select(ApprovalRow).where(ApprovalRow.id == approval_id))).one()


async def ask_to_delete(client, fake_model: FakeModel, user_id: str, task: Task):
    """A thread whose model asked to delete `task`: (thread id, widget item, approval id)."""
    fake_model.script.push(FakeTurn.call("delete_task", task_id=task.id))
    events = await stream(client, user_id, create_thread_req("delete the old task"))
    assert error_events(events) == []
    [widget] = done_items(events, "widget")
    approval_id = buttons(widget["widget"])["Approve"]["payload"]["approval_id"]
    return created_thread_id(events), widget, approval_id


async def click(
    client, user_id: str, thread_id: str, widget_id: str | None, action: str, approval_id: str
):
    payload = {"approval_id": approval_id}
    return await post(client, user_id, custom_action_req(thread_id, widget_id, action, payload))


def events_of(response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return sse_events(response)


async def test_the_run_pauses_and_approve_runs_the_tool_and_the_rest_of_the_answer(
    client, services, fake_model, user
):
    keep = await services.tasks.add(user.user_id, "Keep")
    drop = await services.tasks.add(user.user_id, "Old task")

    thread_id, widget, approval_id = await ask_to_delete(client, fake_model, user.user_id, drop)

    # Paused: the card names the tool and its arguments; nothing was deleted yet.
    assert card_parts(widget["widget"]) == (
        "Waiting for you",
        ["delete_task", f"task_id: {drop.id}"],
        ["Approve", "Reject"],
    )
    assert buttons(widget["widget"])["Reject"] == {
        **buttons(widget["widget"])["Reject"],
        "type": REJECT_ACTION,
        "payload": {"approval_id": approval_id},
    }
    assert len(await services.tasks.list(user.user_id)) == 2
    row = await approval_row(services, approval_id)
    assert (row.user_id, row.thread_id, row.item_id, row.status, row.decided_at) == (
        user.user_id,
        thread_id,
        widget["id"],
        "pending",
        None,
    )
    assert [(c["name"], json.loads(c["arguments"])) for c in row.calls] == [
        ("delete_task", {"task_id": drop.id})
    ]
    assert json.loads(row.state)["current_step"]["type"] == "next_step_interruption"

    fake_model.script.push(FakeTurn.say("Deleted it."))
    events = events_of(
        await click(client, user.user_id, thread_id, widget["id"], APPROVE_ACTION, approval_id)
    )

    assert error_events(events) == []
    assert [t.id for t in await services.tasks.list(user.user_id)] == [keep.id]
    [replaced] = [e for e in events if e["type"] == "thread.item.replaced"]
    assert replaced["item"]["id"] == widget["id"]
    assert card_parts(replaced["item"]["widget"]) == (
        "Approved",
        ["delete_task", f"task_id: {drop.id}"],
        [],
    )
    assert json.loads(tool_results(fake_model)[-1])["deleted"]["id"] == drop.id
    [answer] = done_items(events, "assistant_message")
    assert answer["content"][0]["text"] == "Deleted it."
    row = await approval_row(services, approval_id)
    assert row.status == "approved" and row.decided_at is not None
    # The thread: the request, the decided card, the tool's task list, the answer.
    items = await stored_items(services, user.user_id, thread_id)
    assert [type(item) for item in items] == [
        UserMessageItem,
        WidgetItem,
        WidgetItem,
        AssistantMessageItem,
    ]
    assert isinstance(items[1], WidgetItem) and items[1].id == widget["id"]
    assert card_parts(items[1].widget.model_dump(exclude_none=True))[0] == "Approved"
    assert assistant_texts(items) == ["Deleted it."]

    # The thread goes on as usual.
    await stream(client, user.user_id, add_message_req(thread_id, "thanks"))
    assert assistant_texts(await stored_items(services, user.user_id, thread_id))[-1].startswith(
        "You said: thanks"
    )


async def test_reject_does_not_run_the_tool_and_the_model_reads_the_rejection(
    client, services, fake_model, user
):
    task = await services.tasks.add(user.user_id, "Precious")
    thread_id, widget, approval_id = await ask_to_delete(client, fake_model, user.user_id, task)

    events = events_of(
        await click(client, user.user_id, thread_id, widget["id"], REJECT_ACTION, approval_id)
    )

    assert error_events(events) == []
    assert [t.id for t in await services.tasks.list(user.user_id)] == [task.id]
    assert tool_results(fake_model) == [REJECTED]
    [answer] = done_items(events, "assistant_message")
    assert answer["content"][0]["text"] == f"The tool answered: {REJECTED}"
    [replaced] = [e for e in events if e["type"] == "thread.item.replaced"]
    assert card_parts(replaced["item"]["widget"])[0] == "Rejected"
    assert (await approval_row(services, approval_id)).status == "rejected"


async def test_the_resumed_run_counts_its_tokens(client, services, fake_model, user):
    """The run resumed by Approve calls the model again: its tokens are a usage row of their own
    (the fake model reports one output token per word), so quotas see every model call."""
    task = await services.tasks.add(user.user_id, "Old task")
    thread_id, widget, approval_id = await ask_to_delete(client, fake_model, user.user_id, task)
    before = await usage_rows(services.engine, user.user_id)

    fake_model.script.push(FakeTurn.say("Deleted it now."))
    events = events_of(
        await click(client, user.user_id, thread_id, widget["id"], APPROVE_ACTION, approval_id)
    )

    assert error_events(events) == []
    after = await usage_rows(services.engine, user.user_id)
    assert len(after) == len(before) + 1
    resumed = after[-1]
    assert (resumed.thread_id, resumed.output_tokens) == (thread_id, 3)


async def test_a_second_click_changes_nothing_and_says_so(client, services, fake_model, user):
    task = await services.tasks.add(user.user_id, "Once")
    thread_id, widget, approval_id = await ask_to_delete(client, fake_model, user.user_id, task)
    await click(client, user.user_id, thread_id, widget["id"], REJECT_ACTION, approval_id)
    items_before = await stored_items(services, user.user_id, thread_id)
    calls_before = len(fake_model.script.calls)

    for action in (APPROVE_ACTION, REJECT_ACTION):
        events = events_of(
            await click(client, user.user_id, thread_id, widget["id"], action, approval_id)
        )
        assert [e["message"] for e in error_events(events)] == [
            "This request was already rejected; nothing changed."
        ]

    assert await stored_items(services, user.user_id, thread_id) == items_before
    assert len(fake_model.script.calls) == calls_before  # the model was not called again
    assert [t.id for t in await services.tasks.list(user.user_id)] == [task.id]
    assert (await approval_row(services, approval_id)).status == "rejected"


async def test_a_double_click_resumes_the_run_once(client, services, fake_model, user):
    task = await services.tasks.add(user.user_id, "Twice")
    thread_id, widget, approval_id = await ask_to_delete(client, fake_model, user.user_id, task)
    calls_before = len(fake_model.script.calls)

    responses = await asyncio.gather(
        *(
            click(client, user.user_id, thread_id, widget["id"], APPROVE_ACTION, approval_id)
            for _ in range(2)
        )
    )

    outcomes = sorted(
        "error" if error_events(events) else "resumed" for events in map(events_of, responses)
    )
    assert outcomes == ["error", "resumed"]
    errors = [e["message"] for r in responses for e in error_events(events_of(r))]
    assert errors == ["This request was already approved; nothing changed."]
    assert len(fake_model.script.calls) == calls_before + 1  # one resumed model call
    assert await services.tasks.list(user.user_id) == []
    items = await stored_items(services, user.user_id, thread_id)
    assert len(assistant_texts(items)) == 1


async def test_another_users_click_is_a_404_and_changes_nothing(
    client, services, fake_model, user, other_user
):
    task = await services.tasks.add(user.user_id, "Mine")
    thread_id, widget, approval_id = await ask_to_delete(client, fake_model, user.user_id, task)
    fake_model.script.reset()
    # The other user's own thread, naming the first user's approval.
    theirs = created_thread_id(await stream(client, other_user.user_id, create_thread_req("hi")))

    in_my_thread = await click(
        client, other_user.user_id, thread_id, widget["id"], APPROVE_ACTION, approval_id
    )
    in_their_thread = await click(
        client, other_user.user_id, theirs, None, APPROVE_ACTION, approval_id
    )
    malformed = await click(
        client, other_user.user_id, theirs, None, APPROVE_ACTION, "appr_" + "0" * 500
    )
    no_payload = await post(
        client, other_user.user_id, custom_action_req(theirs, None, APPROVE_ACTION, {})
    )

    for response in (in_my_thread, in_their_thread, malformed):
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "not_found"
    assert no_payload.status_code == 400
    assert "approval_id" in no_payload.json()["message"]
    assert (await approval_row(services, approval_id)).status == "pending"
    assert [t.id for t in await services.tasks.list(user.user_id)] == [task.id]


async def test_a_stale_approval_is_refused(client, services, fake_model, user):
    task = await services.tasks.add(user.user_id, "Old")
    thread_id, widget, approval_id = await ask_to_delete(client, fake_model, user.user_id, task)
    max_age = timedelta(seconds=services.settings.approval_max_age_seconds)
    created_at = (await approval_row(services, approval_id)).created_at
    async with services.engine.begin() as conn:
        await conn.execute(
            update(ApprovalRow)
            .where(ApprovalRow.id == approval_id)
            .values(created_at=created_at - max_age - timedelta(seconds=1))
        )

    events = events_of(
        await click(client, user.user_id, thread_id, widget["id"], APPROVE_ACTION, approval_id)
    )

    [error] = error_events(events)
    assert "expired" in error["message"]
    assert (await approval_row(services, approval_id)).status == "pending"
    assert [t.id for t in await services.tasks.list(user.user_id)] == [task.id]


async def test_the_approval_survives_a_restart(database_url, user):
    """Paused by one server; approved in another built afresh on the same database (both
    served by uvicorn on a loopback port)."""
    settings = make_settings(database_url)
    async with running_app(settings, socket=True) as first:
        task = await first.services.tasks.add(user.user_id, "Survivor")
        thread_id, widget, approval_id = await ask_to_delete(
            first.client, first.fake_model, user.user_id, task
        )

    async with running_app(settings, socket=True) as second:
        second.fake_model.script.push(FakeTurn.say("Done after the restart."))
        events = events_of(
            await click(
                second.client, user.user_id, thread_id, widget["id"], APPROVE_ACTION, approval_id
            )
        )
        assert error_events(events) == []
        assert await second.services.tasks.list(user.user_id) == []
        items = await stored_items(second.services, user.user_id, thread_id)
        assert assistant_texts(items) == ["Done after the restart."]


def test_the_max_age_setting_is_validated() -> None:
    with pytest.raises(ValidationError, match="approval_max_age_seconds"):
        Settings(_env_file=None, approval_max_age_seconds=0)


def test_arguments_read_as_lines() -> None:
    assert readable_arguments('{"task_id": "todo_1", "force": true, "tags": ["a"]}') == [
        ("task_id", "todo_1"),
        ("force", "true"),
        ("tags", '["a"]'),
    ]
    assert readable_arguments("") == []
    assert readable_arguments("[1, 2]") == [("arguments", "[1, 2]")]
    assert readable_arguments("not json") == [("arguments", "not json")]
    assert readable_arguments(json.dumps({"text": "x" * 600}))[0][1].endswith("…")


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_an_mcp_tool_with_require_approval_waits_for_the_user(
    postgres_url, tmp_path: Path, user, transport
):
    """`require_approval` in agent.toml, a real FastMCP server: nothing reaches the server until
    the user approves; a rejected call never does."""
    calls = tmp_path / "calls.jsonl"
    extra = 'require_approval = ["delete_everything"]'
    async with AsyncExitStack() as stack:
        if transport == "stdio":
            toml = stdio_server_toml("local", calls, extra)
        else:
            server = await stack.enter_async_context(HttpMcpServer(free_port(), calls))
            toml = http_server_toml("local", server.port, extra)
        settings = make_settings(postgres_url, agent_config=write_toml(tmp_path, toml))
        running = await stack.enter_async_context(running_app(settings))
        client = running.client

        rejected = await stream(client, user.user_id, create_thread_req("/delete_everything"))
        [card] = done_items(rejected, "widget")
        assert card_parts(card["widget"])[1] == ["delete_everything"]
        await stream(client, user.user_id, create_thread_req('/add {"a": 1, "b": 1}'))
        assert [c["tool"] for c in read_calls(calls)] == ["add"]  # the server is called, but
        events = events_of(
            await click(
                client,
                user.user_id,
                created_thread_id(rejected),
                card["id"],
                REJECT_ACTION,
                buttons(card["widget"])["Reject"]["payload"]["approval_id"],
            )
        )
        assert done_items(events, "assistant_message")[0]["content"][0]["text"] == (
            f"The tool answered: {REJECTED}"
        )
        assert [c["tool"] for c in read_calls(calls)] == ["add"]  # not for the rejected call

        asked = await stream(client, user.user_id, create_thread_req("/delete_everything"))
        [card] = done_items(asked, "widget")
        thread_id = created_thread_id(asked)
        approval_id = buttons(card["widget"])["Approve"]["payload"]["approval_id"]
        events = events_of(
            await click(client, user.user_id, thread_id, card["id"], APPROVE_ACTION, approval_id)
        )

        assert error_events(events) == []
        assert [c["tool"] for c in read_calls(calls)] == ["add", "delete_everything"]
        texts = assistant_texts(await stored_items(running.services, user.user_id, thread_id))
        assert texts == ["The tool answered: deleted"]


async def test_a_state_that_cannot_resume_leaves_the_approval_pending(
    client, services, fake_model, user
):
    task = await services.tasks.add(user.user_id, "Kept")
    thread_id, widget, approval_id = await ask_to_delete(client, fake_model, user.user_id, task)
    state = json.loads((await approval_row(services, approval_id)).state)
    state["current_agent"]["name"] = "An agent this server does not have"
    async with services.engine.begin() as conn:
        await conn.execute(
            update(ApprovalRow).where(ApprovalRow.id == approval_id).values(state=json.dumps(state))
        )

    events = events_of(
        await click(client, user.user_id, thread_id, widget["id"], APPROVE_ACTION, approval_id)
    )

    [error] = error_events(events)
    assert "can no longer be resumed" in error["message"]
    assert (await approval_row(services, approval_id)).status == "pending"
    assert [t.id for t in await services.tasks.list(user.user_id)] == [task.id]


async def test_a_call_whose_mcp_server_is_down_waits_until_it_is_back(
    postgres_url, tmp_path: Path, user
):
    calls = tmp_path / "calls.jsonl"
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(HttpMcpServer(free_port(), calls))
        extra = 'require_approval = ["delete_everything"]'
        # A health check every second: the kill is noticed within a second, however busy the
        # machine (the streamable HTTP client need not see the connection close by itself).
        checks = FAST_RETRIES.replace("health_check_seconds = 30", "health_check_seconds = 1")
        toml = checks + http_server_toml("local", server.port, extra)
        settings = make_settings(postgres_url, agent_config=write_toml(tmp_path, toml))
        running = await stack.enter_async_context(running_app(settings))
        client = running.client
        asked = await stream(client, user.user_id, create_thread_req("/delete_everything"))
        [card] = done_items(asked, "widget")
        thread_id = created_thread_id(asked)
        approval_id = buttons(card["widget"])["Approve"]["payload"]["approval_id"]
        await server.kill()
        await wait_until_state(client, "local", "down")

        events = events_of(
            await click(client, user.user_id, thread_id, card["id"], APPROVE_ACTION, approval_id)
        )

        [error] = error_events(events)
        assert error["message"].startswith("delete_everything cannot be reached right now")
        assert [e for e in events if e["type"] == "thread.item.replaced"] == []
        assert (await approval_row(running.services, approval_id)).status == "pending"

        await server.start()
        await wait_until_state(client, "local", "connected")
        events = events_of(
            await click(client, user.user_id, thread_id, card["id"], APPROVE_ACTION, approval_id)
        )
        assert error_events(events) == []
        assert [c["tool"] for c in read_calls(calls)] == ["delete_everything"]
        texts = assistant_texts(await stored_items(running.services, user.user_id, thread_id))
        assert texts == ["The tool answered: deleted"]
