"""Attachments as model input, read from real stored bytes (PostgreSQL and SQLite)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from agents import Agent, RunConfig, Runner
from agents.testing import ScriptedModel, assistant_message
from chatkit.types import (
    AttachmentCreateParams,
    UserMessageItem,
    UserMessageTextContent,
)

from app.agent.attachments import AttachmentInputs
from app.agent.converter import HistoryConverter
from app.services import Services
from app.store.attachments import Attachments
from tests.conftest import make_settings

PNG = b"\x89PNG\r\n\x1a\n\x00\x01binary\xff"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
async def services(database_url: str) -> AsyncIterator[Services]:
    settings = make_settings(
        database_url, attachment_signing_secret="s", attachment_allowed_mime_types="*/*"
    )
    services = Services.build(settings)
    async with services.lifespan():
        yield services


@pytest.fixture
def attachments(services: Services) -> Attachments:
    return services.attachments


@pytest.fixture
def inputs(services: Services) -> AttachmentInputs:
    return services.model_inputs


async def test_images_become_input_image_data_urls(attachments, inputs, user) -> None:
    image = await attachments.add_uploaded("cat.png", "image/png", PNG, user)
    part = await inputs.turn(user).part(image)
    assert part == {
        "type": "input_image",
        "detail": "auto",
        "image_url": f"data:image/png;base64,{b64(PNG)}",
    }


@pytest.mark.parametrize(
    ("name", "mime_type", "data"),
    [("paper.pdf", "application/pdf", PDF), ("notes.md", "text/markdown", "# Ünï".encode())],
)
async def test_pdf_and_text_become_input_file(
    attachments, inputs, user, name, mime_type, data
) -> None:
    attachment = await attachments.add_uploaded(name, mime_type, data, user)
    part = await inputs.turn(user).part(attachment)
    assert part == {
        "type": "input_file",
        "file_data": f"data:{mime_type};base64,{b64(data)}",
        "filename": name,
    }


async def test_unreadable_formats_become_a_note(attachments, inputs, user) -> None:
    archive = await attachments.add_uploaded("a.zip", "application/zip", b"PK\x03\x04", user)
    svg = await attachments.add_uploaded("v.svg", "image/svg+xml", b"<svg/>", user)
    for attachment in (archive, svg):
        part = await inputs.turn(user).part(attachment)
        assert part["type"] == "input_text"
        assert attachment.name in part["text"] and "cannot read" in part["text"]


async def test_missing_or_foreign_content_is_not_read(
    attachments, inputs, user, other_user
) -> None:
    pending = await attachments.create_attachment(
        AttachmentCreateParams(name="later.txt", size=3, mime_type="text/plain"), user
    )
    await attachments.store.save_attachment(pending, user)
    part = await inputs.turn(user).part(pending)
    assert part == {"type": "input_text", "text": "[Attachment 'later.txt' is not available.]"}

    secret = await attachments.add_uploaded("secret.txt", "text/plain", b"mine", user)
    part = await inputs.turn(other_user).part(secret)
    assert part["type"] == "input_text" and "mine" not in str(part)


async def test_an_image_attachment_reaches_the_scripted_model(attachments, inputs, user) -> None:
    image = await attachments.add_uploaded("cat.png", "image/png", PNG, user)
    message = UserMessageItem(
        id="msg_1",
        thread_id="thr_1",
        created_at=datetime.now(),
        content=[UserMessageTextContent(text="What is this?")],
        attachments=[image.model_copy(update={"thread_id": "thr_1"})],
        inference_options={},
    )
    agent_input = await HistoryConverter(inputs.turn(user)).to_agent_input([message])
    model = ScriptedModel([[assistant_message("A cat.")]])
    result = await Runner.run(
        Agent(name="test", model=model),
        agent_input,
        run_config=RunConfig(tracing_disabled=True),
    )

    assert result.final_output == "A cat."
    assert model.last_call is not None
    sent = model.last_call.input
    user_message = next(item for item in sent if item.get("role") == "user")
    assert user_message["content"] == [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "detail": "auto", "image_url": f"data:image/png;base64,{b64(PNG)}"},
    ]
