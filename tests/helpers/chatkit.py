"""Talking ChatKit over HTTP in tests: build requests, post them as a user, read SSE events."""

from __future__ import annotations

import json
from typing import Any

import httpx


def user_input(text: str, attachments: list[str] | None = None) -> dict[str, Any]:
    return {
        "content": [{"type": "input_text", "text": text}],
        "attachments": attachments or [],
        "inference_options": {},
    }


def create_thread_req(text: str = "Hello") -> dict[str, Any]:
    return {"type": "threads.create", "params": {"input": user_input(text)}}


def add_message_req(thread_id: str, text: str) -> dict[str, Any]:
    return {
        "type": "threads.add_user_message",
        "params": {"thread_id": thread_id, "input": user_input(text)},
    }


def headers_for(user_id: str, **extra: str) -> dict[str, str]:
    return {"X-User-Id": user_id, **extra}


async def post(
    client: httpx.AsyncClient, user_id: str | None, payload: Any, **headers: str
) -> httpx.Response:
    """POST a ChatKit request as `user_id` (via the trusted header the test settings accept)."""
    all_headers = {"Content-Type": "application/json", **headers}
    if user_id is not None:
        all_headers["X-User-Id"] = user_id
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return await client.post("/chatkit", content=body, headers=all_headers)


def sse_events(response: httpx.Response) -> list[dict[str, Any]]:
    """Every `data:` event of a text/event-stream response, decoded; comments are skipped."""
    assert response.headers["content-type"].startswith("text/event-stream"), response.text
    events = []
    for block in response.text.split("\n\n"):
        data = [line[len("data: ") :] for line in block.split("\n") if line.startswith("data: ")]
        if data:
            events.append(json.loads("\n".join(data)))
    return events


def event_types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


async def stream(
    client: httpx.AsyncClient, user_id: str, payload: Any, **headers: str
) -> list[dict[str, Any]]:
    """POST a streaming request that must succeed and return its events."""
    response = await post(client, user_id, payload, **headers)
    assert response.status_code == 200, response.text
    return sse_events(response)


def created_thread_id(events: list[dict[str, Any]]) -> str:
    thread_id: str = next(e for e in events if e["type"] == "thread.created")["thread"]["id"]
    return thread_id


def retry_req(thread_id: str, item_id: str) -> dict[str, Any]:
    return {
        "type": "threads.retry_after_item",
        "params": {"thread_id": thread_id, "item_id": item_id},
    }


def client_tool_output_req(thread_id: str, result: Any) -> dict[str, Any]:
    return {
        "type": "threads.add_client_tool_output",
        "params": {"thread_id": thread_id, "result": result},
    }


def custom_action_req(
    thread_id: str, item_id: str | None, action_type: str, payload: Any = None
) -> dict[str, Any]:
    return {
        "type": "threads.custom_action",
        "params": {
            "thread_id": thread_id,
            "item_id": item_id,
            "action": {"type": action_type, "payload": payload},
        },
    }


def feedback_req(thread_id: str, item_ids: list[str], kind: str) -> dict[str, Any]:
    return {
        "type": "items.feedback",
        "params": {"thread_id": thread_id, "item_ids": item_ids, "kind": kind},
    }


def done_items(events: list[dict[str, Any]], item_type: str) -> list[dict[str, Any]]:
    """The items of `thread.item.done` events of one item type, in stream order."""
    return [
        e["item"]
        for e in events
        if e["type"] == "thread.item.done" and e["item"]["type"] == item_type
    ]


def error_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "error"]
