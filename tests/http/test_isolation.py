"""Cross-user isolation through the API: every request naming another user's id is a not-found."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx
import pytest

from tests.helpers.chatkit import create_thread_req, created_thread_id, post, stream, user_input


@dataclass
class Owned:
    user: str
    thread_id: str
    item_id: str
    attachment_id: str


@pytest.fixture
async def owned(client: httpx.AsyncClient) -> Owned:
    """User A's thread (with a user message) and an attachment."""
    user = f"a-{uuid4().hex[:10]}"
    events = await stream(client, user, create_thread_req("secret plans"))
    thread_id = created_thread_id(events)
    item_id = next(
        e["item"]["id"]
        for e in events
        if e["type"] == "thread.item.done" and e["item"]["type"] == "user_message"
    )
    created = await post(
        client,
        user,
        {
            "type": "attachments.create",
            "params": {"name": "a.txt", "size": 3, "mime_type": "text/plain"},
        },
    )
    assert created.status_code == 200, created.text
    return Owned(user, thread_id, item_id, created.json()["id"])


def requests_naming(o: Owned) -> dict[str, dict[str, Any]]:
    thread = {"thread_id": o.thread_id}
    action = {"type": "noop", "payload": None}
    return {
        "threads.get_by_id": thread,
        "threads.add_user_message": {**thread, "input": user_input("hi")},
        "threads.add_client_tool_output": {**thread, "result": {"ok": True}},
        "threads.add_structured_input": {**thread, "item_id": o.item_id, "input": {}},
        "threads.retry_after_item": {**thread, "item_id": o.item_id},
        "threads.custom_action": {**thread, "item_id": None, "action": action},
        "threads.sync_custom_action": {**thread, "item_id": None, "action": action},
        "threads.update": {**thread, "title": "pwned"},
        "threads.delete": thread,
        "items.feedback": {**thread, "item_ids": [o.item_id], "kind": "positive"},
        "items.feedback@no_items": {**thread, "item_ids": [], "kind": "positive"},
        "attachments.delete": {"attachment_id": o.attachment_id},
        "threads.create": {"input": user_input("hi", attachments=[o.attachment_id])},
    }


NOT_FOUND_TYPES = [
    "threads.get_by_id",
    "threads.add_user_message",
    "threads.add_client_tool_output",
    "threads.add_structured_input",
    "threads.retry_after_item",
    "threads.custom_action",
    "threads.sync_custom_action",
    "threads.update",
    "threads.delete",
    "items.feedback",
    "items.feedback@no_items",
    "attachments.delete",
    "threads.create",
]


async def test_another_users_ids_are_not_found(client: httpx.AsyncClient, owned: Owned) -> None:
    """One setup, every request type (the loop names the failing type)."""
    intruder = f"b-{uuid4().hex[:10]}"
    for request_type in NOT_FOUND_TYPES:
        params = requests_naming(owned)[request_type]
        payload = {"type": request_type.split("@")[0], "params": params}
        response = await post(client, intruder, payload)
        assert response.status_code == 404, (request_type, response.text)
        assert response.json()["error"] == "not_found", request_type
        await assert_thread_untouched(client, owned)
    await assert_attachment_untouched(client, owned)


async def test_items_list_of_another_users_thread_is_empty(
    client: httpx.AsyncClient, owned: Owned
) -> None:
    """The SDK's `items.list` asks the store for a page, which is empty for a foreign thread."""
    intruder = f"b-{uuid4().hex[:10]}"
    response = await post(
        client, intruder, {"type": "items.list", "params": {"thread_id": owned.thread_id}}
    )
    assert response.status_code == 200
    assert response.json()["data"] == [] and response.json()["has_more"] is False


async def test_threads_list_shows_only_ones_own(client: httpx.AsyncClient, owned: Owned) -> None:
    intruder = f"b-{uuid4().hex[:10]}"
    response = await post(client, intruder, {"type": "threads.list", "params": {}})
    assert response.json()["data"] == []
    mine = await post(client, owned.user, {"type": "threads.list", "params": {}})
    assert [t["id"] for t in mine.json()["data"]] == [owned.thread_id]


async def test_a_foreign_item_id_in_ones_own_thread_is_not_found(
    client: httpx.AsyncClient, owned: Owned
) -> None:
    intruder = f"b-{uuid4().hex[:10]}"
    own_thread = created_thread_id(await stream(client, intruder, create_thread_req()))
    for request_type, params in [
        ("threads.retry_after_item", {"thread_id": own_thread, "item_id": owned.item_id}),
        (
            "items.feedback",
            {"thread_id": own_thread, "item_ids": [owned.item_id], "kind": "negative"},
        ),
    ]:
        response = await post(client, intruder, {"type": request_type, "params": params})
        assert response.status_code == 404, (request_type, response.text)


async def assert_thread_untouched(client: httpx.AsyncClient, owned: Owned) -> None:
    """A's thread, its title and its items are all still there."""
    thread = await post(
        client, owned.user, {"type": "threads.get_by_id", "params": {"thread_id": owned.thread_id}}
    )
    assert thread.status_code == 200
    assert thread.json().get("title") != "pwned"
    items = thread.json()["items"]["data"]
    assert [i["type"] for i in items] == ["user_message", "assistant_message"]


async def assert_attachment_untouched(client: httpx.AsyncClient, owned: Owned) -> None:
    """Only A can delete it, which proves it survived: a missing one would be a 404."""
    deleted = await post(
        client,
        owned.user,
        {"type": "attachments.delete", "params": {"attachment_id": owned.attachment_id}},
    )
    assert deleted.status_code == 200, "A's attachment must survive B's attempts"
