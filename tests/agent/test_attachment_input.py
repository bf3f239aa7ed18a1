"""Attachments reach the model: what the scripted model receives for a message with files."""

from __future__ import annotations

import base64

from app.agent.fake_model import FakeTurn
from tests.helpers.chatkit import stream, user_input

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
