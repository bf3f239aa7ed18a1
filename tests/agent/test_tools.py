"""Each default tool called by the (scripted) model through POST /chatkit: effect and widget."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from chatkit.types import ClientToolCallItem, CustomTask, WidgetItem, Workflow, WorkflowItem

from app.agent.approvals import APPROVE_ACTION
from app.agent.fake_model import FakeModel, FakeTurn
from app.store.store import new_id
from app.store.tasks import Task
from tests.helpers.agent import as_user, assistant_texts, stored_items, widget_rows
from tests.helpers.chatkit import (
    client_tool_output_req,
    create_thread_req,
    created_thread_id,
    custom_action_req,
    done_items,
    event_types,
    stream,
)


def tool_output(fake_model: FakeModel) -> dict[str, Any]:
    """What the last tool returned to the model (the function_call_output it was sent)."""
    outputs = [
        entry
        for entry in fake_model.script.calls[-1].input
        if isinstance(entry, dict) and entry.get("type") == "function_call_output"
    ]
    result: dict[str, Any] = json.loads(str(outputs[-1]["output"]))
    return result


async def run_tool(client, fake_model: FakeModel, user_id: str, name: str, **arguments: Any):
    fake_model.script.push(FakeTurn.call(name, **arguments), FakeTurn.say("Done."))
    return await stream(client, user_id, create_thread_req(f"please {name}"))


async def seed(services, user_id: str, *titles: str) -> list[Task]:
    return [await services.tasks.add(user_id, title) for title in titles]


async def test_add_task_saves_it_and_streams_the_list(client, services, fake_model, user):
    events = await run_tool(client, fake_model, user.user_id, "add_task", title="Buy milk")

    [task] = await services.tasks.list(user.user_id)
    assert (task.title, task.done) == ("Buy milk", False)
    [widget] = done_items(events, "widget")
    assert widget_rows(widget["widget"]) == [("Buy milk", False)]
    assert widget["copy_text"] == "[ ] Buy milk"
    assert {"type": "progress_update", "icon": "check-circle", "text": "Adding a task…"} in events
    assert tool_output(fake_model)["added"]["id"] == task.id
    # The widget is part of the stored thread, before the model's closing words.
    items = await stored_items(services, user.user_id, created_thread_id(events))
    assert [type(item).__name__ for item in items][1:] == ["WidgetItem", "AssistantMessageItem"]
    assert assistant_texts(items) == ["Done."]


async def test_list_tasks_shows_only_the_callers_tasks(
    client, services, fake_model, user, other_user
):
    await seed(services, user.user_id, "Mine 1", "Mine 2")
    await seed(services, other_user.user_id, "Not mine")

    events = await run_tool(client, fake_model, user.user_id, "list_tasks")

    [widget] = done_items(events, "widget")
    assert widget_rows(widget["widget"]) == [("Mine 1", False), ("Mine 2", False)]
    assert [t["title"] for t in tool_output(fake_model)["tasks"]] == ["Mine 1", "Mine 2"]


async def test_complete_task_marks_it_done(client, services, fake_model, user):
    [task] = await seed(services, user.user_id, "Write report")

    events = await run_tool(client, fake_model, user.user_id, "complete_task", task_id=task.id)

    assert (await services.tasks.get(user.user_id, task.id)).done is True
    [widget] = done_items(events, "widget")
    assert widget_rows(widget["widget"]) == [("Write report", True)]


async def test_update_task_changes_only_given_fields(client, services, fake_model, user):
    [task] = await seed(services, user.user_id, "Old title")

    events = await run_tool(
        client,
        fake_model,
        user.user_id,
        "update_task",
        task_id=task.id,
        title="New title",
        notes="with notes",
        done=None,
    )

    updated = await services.tasks.get(user.user_id, task.id)
    assert (updated.title, updated.notes, updated.done) == ("New title", "with notes", False)
    [widget] = done_items(events, "widget")
    assert widget_rows(widget["widget"]) == [("New title", False)]


async def approved(client, user_id: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Click Approve on the turn's approval widget: the events of the resumed run."""
    [card] = done_items(events, "widget")
    action = card["widget"]["children"][-1]["children"][0]["onClickAction"]
    assert action["type"] == APPROVE_ACTION
    request = custom_action_req(
        created_thread_id(events), card["id"], action["type"], action["payload"]
    )
    return await stream(client, user_id, request)


async def test_delete_task_asks_first_then_removes_it(client, services, fake_model, user):
    keep, drop = await seed(services, user.user_id, "Keep", "Drop")

    asked = await run_tool(client, fake_model, user.user_id, "delete_task", task_id=drop.id)
    assert len(await services.tasks.list(user.user_id)) == 2  # not before the user says yes
    events = await approved(client, user.user_id, asked)

    assert [t.id for t in await services.tasks.list(user.user_id)] == [keep.id]
    [widget] = done_items(events, "widget")
    assert widget_rows(widget["widget"]) == [("Keep", False)]


async def test_a_tool_cannot_touch_another_users_task(
    client, services, fake_model, user, other_user
):
    [theirs] = await seed(services, other_user.user_id, "Theirs")

    asked = await run_tool(client, fake_model, user.user_id, "delete_task", task_id=theirs.id)
    events = await approved(client, user.user_id, asked)

    assert [t.id for t in await services.tasks.list(other_user.user_id)] == [theirs.id]
    assert done_items(events, "widget") == []
    # The failure went back to the model as a tool result, and the turn still finished.
    outputs = [
        entry
        for entry in fake_model.script.calls[-1].input
        if isinstance(entry, dict) and entry.get("type") == "function_call_output"
    ]
    assert "No task with id" in str(outputs[-1]["output"])
    assert done_items(events, "assistant_message")[0]["content"][0]["text"] == "Done."


async def test_get_current_user_reads_the_request_context(client, fake_model, user):
    fake_model.script.push(FakeTurn.call("get_current_user"), FakeTurn.say("You are you."))
    await stream(
        client,
        user.user_id,
        create_thread_req("who am I?"),
        **{"X-User-Email": "ada@example.com", "X-User-Tier": "pro"},
    )

    me = tool_output(fake_model)
    assert me["user_id"] == user.user_id
    assert (me["email"], me["tier"]) == ("ada@example.com", "pro")


async def test_client_tool_round_trip(client, services, fake_model, user):
    fake_model.script.push(FakeTurn.call("switch_theme", theme="dark"))

    events = await stream(client, user.user_id, create_thread_req("dark mode please"))

    # The run stops at the client tool: no assistant text, a pending call for the browser.
    thread_id = created_thread_id(events)
    [call] = done_items(events, "client_tool_call")
    assert (call["name"], call["arguments"], call["status"]) == (
        "switch_theme",
        {"theme": "dark"},
        "pending",
    )
    assert done_items(events, "assistant_message") == []
    assert len(fake_model.script.calls) == 1

    fake_model.script.push(FakeTurn.say("Switched to dark."))
    resumed = await stream(client, user.user_id, client_tool_output_req(thread_id, {"ok": True}))

    assert [a["content"][0]["text"] for a in done_items(resumed, "assistant_message")] == [
        "Switched to dark."
    ]
    # The model got the call and the browser's output as a function call pair.
    sent = fake_model.script.calls[-1].input
    kinds = [entry.get("type") for entry in sent if isinstance(entry, dict)]
    assert kinds[-2:] == ["function_call", "function_call_output"]
    assert json.loads(str(sent[-1]["output"])) == {"ok": True}  # type: ignore[index]
    items = await stored_items(services, user.user_id, thread_id)
    [stored_call] = [item for item in items if isinstance(item, ClientToolCallItem)]
    assert (stored_call.status, stored_call.output) == ("completed", {"ok": True})
    assert "error" not in event_types(resumed)
    assert not [item for item in items if isinstance(item, WidgetItem)]


async def test_unscripted_fake_model_runs_slash_commands(client, services, user):
    events = await stream(client, user.user_id, create_thread_req('/add_task {"title": "Demo"}'))

    assert [t.title for t in await services.tasks.list(user.user_id)] == ["Demo"]
    assert len(done_items(events, "widget")) == 1
    [answer] = done_items(events, "assistant_message")
    assert answer["content"][0]["text"].startswith("The tool answered: ")


async def test_a_stored_workflow_before_a_client_tool_call_is_continued(
    client, services, fake_model, user
):
    """`stream_agent_response` continues a workflow stored just before the pending client tool
    call (its first read, of the two newest items, answered from the turn's history): the
    answer ends that workflow, under its own id."""
    fake_model.script.push(FakeTurn.call("switch_theme", theme="dark"))
    events = await stream(client, user.user_id, create_thread_req("dark mode please"))
    thread_id = created_thread_id(events)
    [call] = [
        item
        for item in await stored_items(services, user.user_id, thread_id)
        if isinstance(item, ClientToolCallItem)
    ]
    workflow = WorkflowItem(
        id=new_id("workflow"),
        thread_id=thread_id,
        created_at=call.created_at - timedelta(microseconds=1),  # just before the call
        workflow=Workflow(type="custom", tasks=[CustomTask(title="Looking")], expanded=True),
    )
    await services.store.add_thread_item(thread_id, workflow, as_user(user.user_id))

    fake_model.script.push(FakeTurn.say("Switched to dark."))
    resumed = await stream(client, user.user_id, client_tool_output_req(thread_id, {"ok": True}))

    [ended] = [item for item in done_items(resumed, "workflow") if item["id"] == workflow.id]
    assert ended["workflow"]["tasks"][0]["title"] == "Looking"
    assert ended["workflow"]["expanded"] is False  # closed by the answer that followed it
    stored = {item.id: item for item in await stored_items(services, user.user_id, thread_id)}
    assert isinstance(stored[workflow.id], WorkflowItem)
