"""The task-list widget: what the task tools show, and what the `task.*` actions re-render."""

from __future__ import annotations

from typing import Any

from chatkit.widgets import DynamicWidgetRoot, WidgetRoot
from pydantic import BaseModel

from app.store.tasks import Task

COMPLETE_ACTION = "task.complete"
REOPEN_ACTION = "task.reopen"


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
