"""The task widget's buttons (`threads.custom_action`) and item feedback (`items.feedback`)."""

from __future__ import annotations

import pytest
from chatkit.types import HiddenContextItem, WidgetItem
from sqlalchemy import select

from app.agent.fake_model import FakeTurn
from app.agent.widgets import COMPLETE_ACTION, REOPEN_ACTION
from app.store.models import FeedbackRow
from tests.helpers.agent import stored_items, widget_rows
from tests.helpers.chatkit import (
    create_thread_req,
    created_thread_id,
    custom_action_req,
    done_items,
    error_events,
    feedback_req,
    post,
    stream,
)


async def thread_with_task_widget(client, fake_model, user_id: str):
    """A thread whose model added a task and showed the list; returns ids and the task."""
    fake_model.script.push(FakeTurn.call("add_task", title="Call mom"), FakeTurn.say("Added."))
    events = await stream(client, user_id, create_thread_req("remind me to call mom"))
    [widget] = done_items(events, "widget")
    return created_thread_id(events), widget["id"], widget


async def test_complete_action_updates_the_task_and_the_widget_in_place(
    client, services, fake_model, user
):
    thread_id, widget_id, widget = await thread_with_task_widget(client, fake_model, user.user_id)
    button = widget["widget"]["children"][2]["children"][0]["children"][3]
    assert button["onClickAction"]["type"] == COMPLETE_ACTION
    payload = button["onClickAction"]["payload"]

    events = await stream(
        client, user.user_id, custom_action_req(thread_id, widget_id, COMPLETE_ACTION, payload)
    )

    tasks = services.tasks
    assert (await tasks.get(user.user_id, payload["task_id"])).done is True
    [replaced] = [e for e in events if e["type"] == "thread.item.replaced"]
    assert replaced["item"]["id"] == widget_id
    assert widget_rows(replaced["item"]["widget"]) == [("Call mom", True)]
    assert error_events(events) == []
    # Stored in place, same id and position, plus a note for the model's next turn.
    items = await stored_items(services, user.user_id, thread_id)
    [stored_widget] = [item for item in items if isinstance(item, WidgetItem)]
    assert stored_widget.id == widget_id
    assert widget_rows(stored_widget.widget.model_dump()) == [("Call mom", True)]
    assert isinstance(items[-1], HiddenContextItem)
    assert "Call mom" in str(items[-1].content) and "as done" in str(items[-1].content)

    reopened = await stream(
        client, user.user_id, custom_action_req(thread_id, widget_id, REOPEN_ACTION, payload)
    )
    assert (await tasks.get(user.user_id, payload["task_id"])).done is False
    [replaced] = [e for e in reopened if e["type"] == "thread.item.replaced"]
    assert widget_rows(replaced["item"]["widget"]) == [("Call mom", False)]


@pytest.mark.parametrize("which", ["theirs", "malformed"])
async def test_action_on_another_users_task_changes_nothing(
    client, services, fake_model, user, other_user, which
):
    theirs = await services.tasks.add(other_user.user_id, "Private")
    thread_id, widget_id, _ = await thread_with_task_widget(client, fake_model, user.user_id)
    task_id = theirs.id if which == "theirs" else "todo_" + "0" * 500

    events = await stream(
        client,
        user.user_id,
        custom_action_req(thread_id, widget_id, COMPLETE_ACTION, {"task_id": task_id}),
    )

    [error] = error_events(events)
    assert error["message"] == "That task no longer exists."
    assert (await services.tasks.get(other_user.user_id, theirs.id)).done is False


async def test_unknown_action_and_bad_payload_are_readable_errors(client, fake_model, user):
    thread_id, widget_id, _ = await thread_with_task_widget(client, fake_model, user.user_id)

    unknown = await stream(client, user.user_id, custom_action_req(thread_id, widget_id, "nope"))
    bad = await stream(
        client, user.user_id, custom_action_req(thread_id, widget_id, COMPLETE_ACTION, {"x": 1})
    )

    assert [e["message"] for e in error_events(unknown)] == ["Unknown action 'nope'."]
    assert [e["message"] for e in error_events(bad)] == [
        "The action needs a payload with a task_id."
    ]


async def test_feedback_is_stored_per_user_and_item(client, services, user):
    events = await stream(client, user.user_id, create_thread_req("Hi"))
    thread_id = created_thread_id(events)
    [answer] = done_items(events, "assistant_message")

    first = await post(client, user.user_id, feedback_req(thread_id, [answer["id"]], "negative"))
    again = await post(client, user.user_id, feedback_req(thread_id, [answer["id"]], "positive"))

    assert (first.status_code, again.status_code) == (200, 200)
    async with services.engine.connect() as conn:
        rows = (
            await conn.execute(select(FeedbackRow).where(FeedbackRow.item_id == answer["id"]))
        ).all()
    assert [(row.user_id, row.thread_id, row.kind) for row in rows] == [
        (user.user_id, thread_id, "positive")
    ]


async def test_feedback_on_another_users_thread_is_404(client, services, user, other_user):
    events = await stream(client, user.user_id, create_thread_req("Hi"))
    thread_id = created_thread_id(events)
    [answer] = done_items(events, "assistant_message")

    stolen = await post(
        client, other_user.user_id, feedback_req(thread_id, [answer["id"]], "negative")
    )
    unknown_item = await post(
        client, user.user_id, feedback_req(thread_id, ["msg_nope"], "positive")
    )

    assert stolen.status_code == 404 and stolen.json()["error"] == "not_found"
    assert unknown_item.status_code == 404
    async with services.engine.connect() as conn:
        rows = (
            await conn.execute(select(FeedbackRow).where(FeedbackRow.thread_id == thread_id))
        ).all()
    assert rows == []
