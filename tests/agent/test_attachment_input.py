"""Attachments reach the model: what the scripted model (Responses API items) and a Chat
Completions server receive for a message with files."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from chatkit.types import AssistantMessageItem, UserMessageItem

from app.agent.fake_model import FakeTurn
from tests.conftest import make_settings
from tests.helpers.agent import stored_items
from tests.helpers.apps import RunningApp, running_app
from tests.helpers.chatkit import (
    add_message_req,
    created_thread_id,
    error_events,
    stream,
    user_input,
)
from tests.helpers.fake_openai import FakeOpenAI

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


async def upload(client, user_id: str, name: str, mime_type: str, data: bytes) -> str:
    response = await client.post(
        "/chatkit/attachments",
        files={"file": (name, data, mime_type)},
        headers={"X-User-Id": user_id},
    )
    assert response.status_code == 200, response.text
    attachment_id: str = response.json()["id"]
    return attachment_id


async def test_image_and_text_files_are_in_the_model_input(client, fake_model, user) -> None:
    image_id = await upload(client, user.user_id, "dot.png", "image/png", PNG)
    notes_id = await upload(client, user.user_id, "notes.txt", "text/plain", b"remember the milk")
    fake_model.script.push(FakeTurn.say("I see a dot."))

    await stream(
        client,
        user.user_id,
        {
            "type": "threads.create",
            "params": {"input": user_input("What is this?", [image_id, notes_id])},
        },
    )

    (message,) = fake_model.script.calls[-1].input
    parts = {part["type"]: part for part in message["content"]}
    assert parts["input_text"]["text"] == "What is this?"
    expected_image = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert parts["input_image"]["image_url"] == expected_image
    assert parts["input_file"]["filename"] == "notes.txt"
    assert parts["input_file"]["file_data"] == (
        "data:text/plain;base64," + base64.b64encode(b"remember the milk").decode()
    )


async def test_another_users_attachment_never_reaches_the_model(
    client, fake_model, user, other_user
) -> None:
    image_id = await upload(client, user.user_id, "dot.png", "image/png", PNG)
    calls_before = len(fake_model.script.calls)
    response = await client.post(
        "/chatkit",
        json={"type": "threads.create", "params": {"input": user_input("Steal", [image_id])}},
        headers={"X-User-Id": other_user.user_id},
    )
    assert response.status_code == 404
    assert len(fake_model.script.calls) == calls_before


@asynccontextmanager
async def chat_completions_app(database_url: str, fake: FakeOpenAI) -> AsyncIterator[RunningApp]:
    settings = make_settings(
        database_url,
        model_provider="openai",
        model_api="chat_completions",
        openai_base_url=fake.base_url,
        openai_max_retries=0,
    )
    async with running_app(settings) as running:
        yield running


async def test_over_chat_completions_images_and_text_files_go_as_their_parts(
    database_url, user
) -> None:
    async with FakeOpenAI() as fake, chat_completions_app(database_url, fake) as running:
        client = running.client
        image_id = await upload(client, user.user_id, "dot.png", "image/png", PNG)
        notes_id = await upload(client, user.user_id, "notes.txt", "text/plain", b"buy milk")
        await stream(
            client,
            user.user_id,
            {
                "type": "threads.create",
                "params": {"input": user_input("What is this?", [image_id, notes_id])},
            },
        )

    [answer] = fake.streamed()
    assert answer.body["messages"][-1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {
                "type": "image_url",
                "image_url": {
                    "url": "data:image/png;base64," + base64.b64encode(PNG).decode(),
                    "detail": "auto",
                },
            },
            {"type": "text", "text": "[The user attached 'notes.txt' (text/plain):]\nbuy milk"},
        ],
    }


async def test_over_chat_completions_a_pdf_is_refused_by_name(database_url, user) -> None:
    async with FakeOpenAI() as fake, chat_completions_app(database_url, fake) as running:
        client = running.client
        pdf_id = await upload(client, user.user_id, "report.pdf", "application/pdf", b"%PDF-1.4")
        events = await stream(
            client,
            user.user_id,
            {"type": "threads.create", "params": {"input": user_input("Summarize", [pdf_id])}},
        )
        [error] = error_events(events)
        thread_id = created_thread_id(events)
        later = await stream(client, user.user_id, add_message_req(thread_id, "Hello again"))

    assert "Chat Completions API" in error["message"] and "'report.pdf'" in error["message"]
    assert error["allow_retry"] is False
    # The model was not asked to answer the PDF; the thread goes on, the PDF noted as unread.
    [answer] = fake.streamed()
    assert error_events(later) == []
    sent = json.dumps(answer.body["messages"])
    assert "report.pdf' (application/pdf), unreadable here." in sent
    assert "JVBERi0" not in sent  # the file's bytes (base64 of %PDF) never left
    items = await stored_items(running.services, user.user_id, thread_id)
    assert [type(item) for item in items] == [
        UserMessageItem,
        UserMessageItem,
        AssistantMessageItem,
    ]
