"""Bad requests get a 4xx with a JSON reason and leave the database as it was."""

from __future__ import annotations

import pytest

from app.server import MAX_LIST_ITEMS
from app.store.models import AttachmentRow, ItemRow, ThreadRow
from tests.helpers.chatkit import (
    add_message_req,
    create_thread_req,
    created_thread_id,
    feedback_req,
    post,
    retry_req,
    stream,
    user_input,
)
from tests.helpers.database import owned_rows


async def row_counts(services, user_id: str) -> tuple[int, ...]:
    return tuple(
        [
            await owned_rows(services.engine, table, user_id=user_id)
            for table in (ThreadRow, ItemRow, AttachmentRow)
        ]
    )


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "not valid JSON"),
        (b'{"type": "threads.explode", "params": {}}', 400, "threads.explode"),
        (b'{"params": {}}', 400, "type"),
        (b'{"type": "threads.get_by_id", "params": {}}', 400, "thread_id"),
        (b'{"type": "threads.get_by_id", "params": {"thread_id": 42}}', 400, "thread_id"),
        (b'{"type": "threads.list", "params": {"limit": "ten"}}', 400, "limit"),
        (b'{"type": "threads.list", "params": {"limit": 0}}', 400, "limit"),
        (b'{"type": "threads.list", "params": {"order": "sideways"}}', 400, "order"),
        (b'{"type": "threads.create", "params": {"input": {"content": "hi"}}}', 400, "content"),
        (
            b'{"type": "items.feedback", "params": {"thread_id": "t", "item_ids": [],'
            b' "kind": "meh"}}',
            400,
            "kind",
        ),
        (b"[1, 2, 3]", 400, ""),
    ],
)
async def test_malformed_requests(
    client, services, user, body: bytes, status: int, reason: str
) -> None:
    await stream(client, user.user_id, create_thread_req())
    before = await row_counts(services, user.user_id)

    response = await post(client, user.user_id, body)

    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error"] == "invalid_request" or payload["error"] == "bad_request"
    assert reason in payload["message"]
    assert await row_counts(services, user.user_id) == before


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "threads.get_by_id", "params": {"thread_id": "thr_missing"}},
        {"type": "threads.update", "params": {"thread_id": "thr_missing", "title": "x"}},
        {"type": "threads.delete", "params": {"thread_id": "thr_missing"}},
        add_message_req("thr_missing", "hello"),
        {
            "type": "threads.add_client_tool_output",
            "params": {"thread_id": "thr_missing", "result": None},
        },
        {
            "type": "threads.retry_after_item",
            "params": {"thread_id": "thr_missing", "item_id": "msg_x"},
        },
        {
            "type": "threads.custom_action",
            "params": {"thread_id": "thr_missing", "action": {"type": "a", "payload": {}}},
        },
        {"type": "attachments.delete", "params": {"attachment_id": "atc_missing"}},
        {
            "type": "threads.create",
            "params": {
                "input": {
                    "content": [{"type": "input_text", "text": "hi"}],
                    "attachments": ["atc_missing"],
                    "inference_options": {},
                }
            },
        },
    ],
    ids=lambda p: p["type"],
)
async def test_missing_things_are_404(client, services, user, payload) -> None:
    before = await row_counts(services, user.user_id)
    response = await post(client, user.user_id, payload)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "not_found"
    assert "not found" in response.json()["message"]
    assert await row_counts(services, user.user_id) == before


async def test_items_list_of_missing_thread_is_empty(client, user) -> None:
    """The SDK's contract: listing items of an unknown thread is an empty page, not an error."""
    response = await post(
        client, user.user_id, {"type": "items.list", "params": {"thread_id": "thr_missing"}}
    )
    assert response.status_code == 200
    assert response.json() == {"data": [], "has_more": False}


async def test_no_identity_is_401(client) -> None:
    response = await post(client, None, create_thread_req())
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


async def test_thread_created_then_message_failure_leaves_thread_consistent(
    client, services, user
) -> None:
    thread_id = created_thread_id(await stream(client, user.user_id, create_thread_req()))
    before = await row_counts(services, user.user_id)
    response = await post(
        client,
        user.user_id,
        {
            "type": "threads.add_user_message",
            "params": {
                "thread_id": thread_id,
                "input": {
                    "content": [{"type": "input_text", "text": "x"}],
                    "attachments": ["atc_nope"],
                    "inference_options": {},
                },
            },
        },
    )
    assert response.status_code == 404
    assert await row_counts(services, user.user_id) == before


@pytest.mark.parametrize(
    "payload",
    [
        b'{"type": "threads.get_by_id", "params": {"thread_id": "thr_\\u0000"}}',
        b'{"type": "threads.create", "params": {"input": {"content": [{"type": "input_text",'
        b' "text": "a\\u0000b"}], "attachments": [], "inference_options": {}}}}',
        b'{"type": "threads.update", "params": {"thread_id": "t", "title": "a\\u0000"}}',
    ],
)
async def test_nul_characters_are_refused_before_any_write(client, services, user, payload) -> None:
    """PostgreSQL cannot store NUL: it must be a 400, never a 500 or a half-written thread."""
    before = await row_counts(services, user.user_id)
    response = await post(client, user.user_id, payload)
    assert response.status_code == 400
    assert "NUL" in response.json()["message"]
    assert await row_counts(services, user.user_id) == before


async def test_deeply_nested_json_is_a_400(client, user) -> None:
    response = await post(client, user.user_id, b"[" * 100_000 + b"]" * 100_000)
    assert response.status_code == 400


MALFORMED_IDS = {
    "too_long": "thr_" + "0" * 61,
    "space": "thr_a b",
    "markup": "thr_<script>",
    "quote": "thr_' OR '1'='1",
    "non_ascii": "thr_\u00e9t\u00e9",
    "no_prefix": "0123456789abcdef",
    "unknown_prefix": "usr_0123456789abcdef",
    "empty": "",
}


def requests_naming(thread_id: str, item_id: str, bad: str) -> dict[str, dict[str, object]]:
    """One request per place an id can hide in, with `bad` in that place."""
    bad_item = bad.replace("thr_", "msg_", 1)
    bad_attachment = bad.replace("thr_", "atc_", 1)
    return {
        "get_by_id": {"type": "threads.get_by_id", "params": {"thread_id": bad}},
        "threads.update": {"type": "threads.update", "params": {"thread_id": bad, "title": "x"}},
        "threads.delete": {"type": "threads.delete", "params": {"thread_id": bad}},
        "threads.list.after": {"type": "threads.list", "params": {"after": bad or " "}},
        "items.list": {"type": "items.list", "params": {"thread_id": bad}},
        "items.list.after": {
            "type": "items.list",
            "params": {"thread_id": thread_id, "after": bad_item or " "},
        },
        "feedback.item_ids": {
            "type": "items.feedback",
            "params": {"thread_id": thread_id, "item_ids": [item_id, bad_item], "kind": "positive"},
        },
        "retry.item_id": retry_req(thread_id, bad_item),
        "add_message": add_message_req(bad, "hello"),
        "attachments.delete": {
            "type": "attachments.delete",
            "params": {"attachment_id": bad_attachment},
        },
        "message.attachments": {
            "type": "threads.create",
            "params": {"input": user_input("hi", [bad_attachment])},
        },
    }


@pytest.mark.parametrize("place", list(requests_naming("t", "i", "b")))
@pytest.mark.parametrize("bad", list(MALFORMED_IDS.values()), ids=list(MALFORMED_IDS))
async def test_malformed_ids_are_404_wherever_they_are(client, services, user, place, bad) -> None:
    """An id that cannot be one of ours is unknown: a 404, never a 500, and nothing written."""
    events = await stream(client, user.user_id, create_thread_req())
    thread_id = created_thread_id(events)
    item_id = next(e["item"]["id"] for e in events if e["type"] == "thread.item.done")
    before = await row_counts(services, user.user_id)

    response = await post(client, user.user_id, requests_naming(thread_id, item_id, bad)[place])

    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found"
    assert await row_counts(services, user.user_id) == before


def oversized_lists(thread_id: str, item_id: str, size: int) -> dict[str, dict[str, object]]:
    message = user_input("hi")
    message["content"] = [{"type": "input_text", "text": "x"}] * size
    answers = {f"q{n}": {"values": ["a"]} for n in range(size)}
    return {
        "feedback.item_ids": feedback_req(thread_id, [item_id] * size, "positive"),
        "message.content": {
            "type": "threads.add_user_message",
            "params": {"thread_id": thread_id, "input": message},
        },
        "structured_input.answers": {
            "type": "threads.add_structured_input",
            "params": {"thread_id": thread_id, "item_id": item_id, "input": {"answers": answers}},
        },
        "structured_input.values": {
            "type": "threads.add_structured_input",
            "params": {
                "thread_id": thread_id,
                "item_id": item_id,
                "input": {"answers": {"q": {"values": ["a"] * size}}},
            },
        },
    }


@pytest.mark.parametrize("place", list(oversized_lists("t", "i", 1)))
async def test_lists_past_the_limit_are_400(client, services, user, place) -> None:
    events = await stream(client, user.user_id, create_thread_req())
    thread_id = created_thread_id(events)
    item_id = next(e["item"]["id"] for e in events if e["type"] == "thread.item.done")
    before = await row_counts(services, user.user_id)
    request = oversized_lists(thread_id, item_id, MAX_LIST_ITEMS + 1)[place]

    response = await post(client, user.user_id, request)

    assert response.status_code == 400, response.text
    assert f"at most {MAX_LIST_ITEMS}" in response.json()["message"]
    assert await row_counts(services, user.user_id) == before


async def test_feedback_on_40000_items_is_400_not_unavailable(client, user) -> None:
    """Past asyncpg's argument limit, this once answered 503 "database unavailable"."""
    thread_id = created_thread_id(await stream(client, user.user_id, create_thread_req()))
    item_ids = [f"msg_{n}" for n in range(40_000)]
    response = await post(client, user.user_id, feedback_req(thread_id, item_ids, "positive"))
    assert response.status_code == 400, response.text


async def test_feedback_on_as_many_items_as_allowed_is_fine(client, user) -> None:
    events = await stream(client, user.user_id, create_thread_req())
    thread_id = created_thread_id(events)
    item_id = next(e["item"]["id"] for e in events if e["type"] == "thread.item.done")
    request = feedback_req(thread_id, [item_id] * MAX_LIST_ITEMS, "positive")
    assert (await post(client, user.user_id, request)).status_code == 200
