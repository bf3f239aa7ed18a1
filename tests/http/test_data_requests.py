"""A user's data on request: export (a zip), erase (confirmed), then an export that is empty.

Two users with the same kinds of data; the other user's rows are counted, table by table,
before and after, with queries of the test's own.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any
from uuid import uuid4

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.models import (
    AttachmentContentRow,
    AttachmentRow,
    FeedbackRow,
    ItemRow,
    TaskRow,
    ThreadRow,
    TokenUsageRow,
    UsageCounterRow,
)
from tests.helpers.chatkit import (
    add_message_req,
    create_thread_req,
    created_thread_id,
    done_items,
    feedback_req,
    post,
    stream,
    user_input,
)

CONFIRM = {"confirm": "erase my data"}
USER_TABLES = (
    ThreadRow,
    ItemRow,
    AttachmentRow,
    TaskRow,
    FeedbackRow,
    TokenUsageRow,
    UsageCounterRow,
)


def new_user() -> str:
    return f"u-{uuid4().hex[:10]}"


async def row_counts(engine: AsyncEngine, user: str) -> dict[str, int]:
    """The user's rows in every table, attachment bytes included (they have no user_id)."""
    counts: dict[str, int] = {}
    async with engine.connect() as conn:
        for table in USER_TABLES:
            counts[table.__tablename__] = int(
                await conn.scalar(
                    select(func.count()).select_from(table).where(table.user_id == user)
                )
                or 0
            )
        owned = select(AttachmentRow.id).where(AttachmentRow.user_id == user)
        counts["attachment_contents"] = int(
            await conn.scalar(
                select(func.count())
                .select_from(AttachmentContentRow)
                .where(AttachmentContentRow.id.in_(owned))
            )
            or 0
        )
    return counts


async def make_data(client: httpx.AsyncClient, user: str) -> dict[str, Any]:
    """A thread with an attachment, a task (through the tool), feedback and token usage."""
    upload = await client.post(
        "/chatkit/attachments",
        files={"file": ("notes.txt", f"bytes of {user}".encode(), "text/plain")},
        headers={"X-User-Id": user},
    )
    assert upload.status_code == 200, upload.text
    attachment_id = upload.json()["id"]
    request = {
        "type": "threads.create",
        "params": {"input": user_input('/add_task {"title": "Buy milk"}', [attachment_id])},
    }
    events = await stream(client, user, request)
    thread_id = created_thread_id(events)
    later = await stream(client, user, add_message_req(thread_id, "Thanks"))
    [answer] = done_items(later, "assistant_message")
    rated = await post(client, user, feedback_req(thread_id, [answer["id"]], "positive"))
    assert rated.status_code == 200
    return {"thread_id": thread_id, "attachment_id": attachment_id, "answer_id": answer["id"]}


async def export(client: httpx.AsyncClient, user: str) -> zipfile.ZipFile:
    response = await client.get("/chatkit/export", headers={"X-User-Id": user})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    return zipfile.ZipFile(io.BytesIO(response.content))


def read_json(archive: zipfile.ZipFile, name: str) -> Any:
    return json.loads(archive.read(name))


@pytest.mark.usefixtures("fake_model")
async def test_export_then_erase_then_an_empty_export(client, services) -> None:
    user, other = new_user(), new_user()
    mine = await make_data(client, user)
    await make_data(client, other)
    engine = services.engine
    before = await row_counts(engine, user)
    assert all(before.values()), before  # every kind of data exists
    other_before = await row_counts(engine, other)

    archive = await export(client, user)
    assert archive.testzip() is None
    thread_id, attachment_id = mine["thread_id"], mine["attachment_id"]
    names = set(archive.namelist())
    assert names == {
        "manifest.json",
        f"threads/{thread_id}.json",
        "attachments.json",
        "tasks.json",
        "feedback.json",
        "token_usage.json",
        "approvals.json",  # tables with a user_id column are exported, empty ones too
        "provider_files.json",
        f"attachments/{attachment_id}/notes.txt",
    }
    manifest = read_json(archive, "manifest.json")
    assert manifest["user_id"] == user
    assert manifest["rows"]["threads"] == 1
    assert manifest["rows"]["thread_items"] == before["thread_items"]
    thread = read_json(archive, f"threads/{thread_id}.json")
    assert thread["thread"]["id"] == thread_id
    assert len(thread["items"]) == before["thread_items"]
    assert thread["items"][0]["type"] == "user_message"
    assert thread["items"][0]["attachments"][0]["id"] == attachment_id
    assert archive.read(f"attachments/{attachment_id}/notes.txt") == f"bytes of {user}".encode()
    assert [task["title"] for task in read_json(archive, "tasks.json")] == ["Buy milk"]
    [rating] = read_json(archive, "feedback.json")
    assert (rating["item_id"], rating["kind"]) == (mine["answer_id"], "positive")
    usage = read_json(archive, "token_usage.json")
    assert len(usage) == before["token_usage"] and all(row["user_id"] == user for row in usage)
    assert user in json.dumps(read_json(archive, "attachments.json"))

    refused = await client.delete("/chatkit/me", headers={"X-User-Id": user})
    assert refused.status_code == 400
    assert "erase my data" in refused.json()["message"]
    wrong = await client.request(
        "DELETE", "/chatkit/me", json={"confirm": "yes"}, headers={"X-User-Id": user}
    )
    assert wrong.status_code == 400
    assert await row_counts(engine, user) == before  # nothing erased by a refused request

    erased = await client.request(
        "DELETE", "/chatkit/me", json=CONFIRM, headers={"X-User-Id": user}
    )
    assert erased.status_code == 200, erased.text
    counts = erased.json()["erased"]
    for table in ("threads", "thread_items", "attachments", "tasks", "feedback", "token_usage"):
        assert counts[table] == before[table], table
    assert counts["attachment_files"] == 1
    assert await row_counts(engine, user) == dict.fromkeys(before, 0)
    assert await row_counts(engine, other) == other_before

    empty = await export(client, user)
    assert set(empty.namelist()) == {
        "manifest.json",
        "attachments.json",
        "tasks.json",
        "feedback.json",
        "token_usage.json",
        "approvals.json",
        "provider_files.json",
    }
    assert set(read_json(empty, "manifest.json")["rows"].values()) == {0}
    for name in ("attachments.json", "tasks.json", "feedback.json", "token_usage.json"):
        assert read_json(empty, name) == []
    assert await row_counts(engine, other) == other_before


@pytest.mark.usefixtures("fake_model")
async def test_erase_confirmed_by_header(client, services) -> None:
    user = new_user()
    await stream(client, user, create_thread_req("Hello"))
    response = await client.delete(
        "/chatkit/me", headers={"X-User-Id": user, "X-Confirm-Erase": "erase my data"}
    )
    assert response.status_code == 200
    assert response.json()["erased"]["threads"] == 1
    assert set((await row_counts(services.engine, user)).values()) == {0}


async def test_erase_refuses_bad_bodies(client) -> None:
    user = new_user()
    for body in (b"not json", b"[1, 2]", b'{"confirm": 1}', b"x" * 2000, b"[" * 1000):
        response = await client.request(
            "DELETE", "/chatkit/me", content=body, headers={"X-User-Id": user}
        )
        assert response.status_code == 400, body[:20]
        assert response.json()["error"] == "bad_request"


async def test_data_routes_need_an_identity(client) -> None:
    assert (await client.get("/chatkit/export")).status_code == 401
    response = await client.request("DELETE", "/chatkit/me", json=CONFIRM)
    assert response.status_code == 401
    assert response.json()["error"]
