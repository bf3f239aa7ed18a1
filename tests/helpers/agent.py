"""Reading what a ChatKit turn stored, as the user it belongs to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chatkit.types import AssistantMessageItem, ThreadItem, ThreadMetadata

from app.context import RequestContext
from app.services import Services

MODEL_TITLES = Path(__file__).with_name("model_titles.toml")
"""An agent configuration whose titles the model writes (`[titles] writer = "model"`)."""


def as_user(user_id: str) -> RequestContext:
    return RequestContext(user_id=user_id, auth_method="development")


async def stored_items(services: Services, user_id: str, thread_id: str) -> list[ThreadItem]:
    store = services.store
    page = await store.load_thread_items(thread_id, None, 100, "asc", as_user(user_id))
    return page.data


async def stored_thread(services: Services, user_id: str, thread_id: str) -> ThreadMetadata:
    return await services.store.load_thread(thread_id, as_user(user_id))


def assistant_texts(items: list[ThreadItem]) -> list[str]:
    return [
        "".join(part.text for part in item.content)
        for item in items
        if isinstance(item, AssistantMessageItem)
    ]


def widget_rows(widget: dict[str, Any]) -> list[tuple[str, bool]]:
    """(title, done) of each task row in a task-list widget, as serialized."""
    rows = widget["children"][2]["children"]
    return [
        (row["children"][1]["value"], row["children"][1]["lineThrough"])
        for row in rows
        if row["type"] == "Row"
    ]
