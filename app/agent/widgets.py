"""The task-list widget: what the task tools show, and its buttons' actions.

A widget's button sends an action (`threads.custom_action`); the server looks its type up in
`WIDGET_ACTIONS` and streams what the handler yields. A new action is a handler and one entry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from chatkit.actions import Action
from chatkit.errors import CustomStreamError
from chatkit.types import (
    HiddenContextItem,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadStreamEvent,
    WidgetItem,
)
from chatkit.widgets import DynamicWidgetRoot, WidgetRoot
from pydantic import BaseModel, ValidationError

from app.agent.context import AssistantContext
from app.store.db import has_id_shape
from app.store.tasks import TASK_ID_PREFIX, Task, TaskNotFoundError

COMPLETE_ACTION = "task.complete"
REOPEN_ACTION = "task.reopen"

WidgetAction = Callable[
    [Action[str, Any], WidgetItem | None, AssistantContext], AsyncIterator[ThreadStreamEvent]
]
"""Handles one action type: the action, the widget item that sent it, the turn's context."""


class TaskActionPayload(BaseModel):
    """The payload of both task actions."""

    task_id: str


def _task_row(task: Task, highlight: str | None) -> dict[str, Any]:
    toggle = REOPEN_ACTION if task.done else COMPLETE_ACTION
    return {
        "type": "Row",
        "key": task.id,
        "gap": 2,
        "align": "center",
        "children": [
            {"type": "Icon", "name": "check-circle-filled" if task.done else "empty-circle"},
            {
                "type": "Text",
                "value": task.title,
                "lineThrough": task.done,
                "color": "secondary" if task.done else "prose",
                "weight": "semibold" if task.id == highlight else "normal",
            },
            {"type": "Spacer"},
            {
                "type": "Button",
                "label": "Reopen" if task.done else "Done",
                "size": "sm",
                "variant": "outline" if task.done else "solid",
                "onClickAction": {"type": toggle, "payload": {"task_id": task.id}},
            },
        ],
    }


def task_list_widget(tasks: list[Task], *, highlight: str | None = None) -> WidgetRoot:
    """A card listing the tasks, each with a button that completes (or reopens) it."""
    open_count = sum(not task.done for task in tasks)
    rows: list[dict[str, Any]] = [_task_row(task, highlight) for task in tasks] or [
        {"type": "Text", "value": "No tasks yet.", "color": "secondary"}
    ]
    return DynamicWidgetRoot.model_validate(
        {
            "type": "Card",
            "size": "md",
            "children": [
                {
                    "type": "Row",
                    "children": [
                        {"type": "Title", "value": "Tasks", "size": "sm"},
                        {"type": "Spacer"},
                        {"type": "Badge", "label": f"{open_count} open", "color": "info"},
                    ],
                },
                {"type": "Divider"},
                {"type": "Col", "gap": 2, "children": rows},
            ],
        }
    )


def task_list_text(tasks: list[Task]) -> str:
    """The same list as plain text: the widget's copy text."""
    if not tasks:
        return "No tasks yet."
    return "\n".join(f"[{'x' if task.done else ' '}] {task.title}" for task in tasks)


async def toggle_task(
    action: Action[str, Any], sender: WidgetItem | None, context: AssistantContext
) -> AsyncIterator[ThreadStreamEvent]:
    """The Done and Reopen buttons: update the task, re-render the widget in place, and tell
    the model, on its next turn, what the user did."""
    caller = context.request_context
    try:
        payload = TaskActionPayload.model_validate(action.payload)
        if not has_id_shape(payload.task_id, {TASK_ID_PREFIX}):
            raise TaskNotFoundError(payload.task_id)
        done = action.type == COMPLETE_ACTION
        task = await context.tasks.update(caller.user_id, payload.task_id, done=done)
    except ValidationError as exc:
        raise CustomStreamError("The action needs a payload with a task_id.") from exc
    except TaskNotFoundError as exc:
        raise CustomStreamError("That task no longer exists.") from exc
    tasks = await context.tasks.list(caller.user_id)
    if sender is not None:
        widget = task_list_widget(tasks, highlight=task.id)
        yield ThreadItemReplacedEvent(
            item=sender.model_copy(update={"widget": widget, "copy_text": task_list_text(tasks)})
        )
    yield ThreadItemDoneEvent(
        item=HiddenContextItem(
            id=context.store.generate_item_id("message", context.thread, caller),
            thread_id=context.thread.id,
            created_at=datetime.now(),
            content=f"The user marked the task {task.title!r} (id {task.id}) as "
            f"{'done' if done else 'not done'} in the task list.",
        )
    )


WIDGET_ACTIONS: dict[str, WidgetAction] = {COMPLETE_ACTION: toggle_task, REOPEN_ACTION: toggle_task}
"""Every action a widget of ours can send, by its type."""
