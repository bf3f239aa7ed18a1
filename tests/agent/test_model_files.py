"""Attachments reach a provider with a Files API once: uploaded on the turn that introduces
them, referred to by file id afterwards, uploaded again when the provider forgot them, and
deleted there when they are deleted here (the local OpenAI stand-in, PostgreSQL and SQLite)."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from PIL import Image

from app.config import ModelApi
from tests.conftest import make_settings
from tests.helpers.apps import RunningApp, running_app
from tests.helpers.chatkit import (
    add_message_req,
    created_thread_id,
    error_events,
    post,
    stream,
    user_input,
)
from tests.helpers.fake_openai import FakeOpenAI, Received

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\nthe report\n"


def png(width: int = 8, height: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


@asynccontextmanager
async def files_app(
    database_url: str, fake: FakeOpenAI, api: ModelApi = "responses", **overrides: Any
) -> AsyncIterator[RunningApp]:
    settings = make_settings(
        database_url,
        model_provider="openai",
        model_api=api,
        openai_base_url=fake.base_url,
        openai_max_retries=0,
        model_files_api="on",
        attachment_allowed_mime_types="*/*",
        **overrides,
    )
    async with running_app(settings) as running:
        yield running


async def upload(running: RunningApp, user_id: str, name: str, mime: str, data: bytes) -> str:
    response = await running.client.post(
        "/chatkit/attachments",
        files={"file": (name, data, mime)},
        headers={"X-User-Id": user_id},
    )
    assert response.status_code == 200, response.text
    attachment_id: str = response.json()["id"]
    return attachment_id


async def turn(
    running: RunningApp,
    user_id: str,
    text: str,
    thread_id: str | None = None,
    attachments: list[str] | None = None,
) -> str:
    """One successful turn; returns the thread id."""
    payload: dict[str, Any]
    if thread_id is None:
        payload = {"type": "threads.create", "params": {"input": user_input(text, attachments)}}
    else:
        payload = add_message_req(thread_id, text)
        payload["params"]["input"]["attachments"] = attachments or []
    events = await stream(running.client, user_id, payload)
    assert error_events(events) == []
    return thread_id or created_thread_id(events)


def user_parts(request: Received, index: int = 0) -> list[dict[str, Any]]:
    """The content parts of the request's `index`-th user message (Responses API)."""
    messages = [item for item in request.body["input"] if item.get("role") == "user"]
    parts: list[dict[str, Any]] = messages[index]["content"]
    return parts


async def test_uploaded_once_then_referred_to_by_file_id(database_url, user) -> None:
    image = png()
    async with FakeOpenAI() as fake, files_app(database_url, fake) as running:
        image_id = await upload(running, user.user_id, "dot.png", "image/png", image)
        pdf_id = await upload(running, user.user_id, "report.pdf", "application/pdf", PDF)
        thread_id = await turn(running, user.user_id, "Read these", attachments=[image_id, pdf_id])
        await turn(running, user.user_id, "And again?", thread_id)
        await turn(running, user.user_id, "Once more?", thread_id)

    # The turn that introduced them uploaded each once, whole, with the documented purpose.
    image_file, pdf_file = sorted(fake.uploads, key=lambda file: file.filename)
    assert (image_file.purpose, image_file.filename, image_file.data) == (
        "vision",
        "dot.png",
        image,
    )
    assert (pdf_file.purpose, pdf_file.filename, pdf_file.data) == ("user_data", "report.pdf", PDF)
    # Every turn refers to them by id, bytes never inline.
    first, second, third = fake.streamed()
    for request in (first, second, third):
        assert user_parts(request)[1:] == [
            {"type": "input_image", "detail": "auto", "file_id": image_file.id},
            {"type": "input_file", "file_id": pdf_file.id, "filename": "report.pdf"},
        ]
        assert "base64" not in json.dumps(request.body)
    assert third.size < 4_000


async def test_a_file_the_provider_forgot_is_uploaded_again_once(database_url, user) -> None:
    async with FakeOpenAI() as fake, files_app(database_url, fake) as running:
        pdf_id = await upload(running, user.user_id, "report.pdf", "application/pdf", PDF)
        thread_id = await turn(running, user.user_id, "Read this", attachments=[pdf_id])
        [old] = fake.uploads
        fake.forget(old.id)  # expired at the provider

        await turn(running, user.user_id, "Still there?", thread_id)
        await turn(running, user.user_id, "And now?", thread_id)

    old_copy, new_copy = fake.uploads
    assert new_copy.data == PDF and new_copy.id != old.id
    refused, retried, later = fake.streamed()[1:]
    assert user_parts(refused)[1]["file_id"] == old.id
    assert user_parts(retried)[1]["file_id"] == new_copy.id
    assert user_parts(later)[1]["file_id"] == new_copy.id  # kept: no third upload
    assert len(fake.uploads) == 2


async def test_deleting_attachments_and_threads_deletes_the_provider_copies(
    database_url, user
) -> None:
    async with FakeOpenAI() as fake, files_app(database_url, fake) as running:
        kept = await upload(running, user.user_id, "kept.pdf", "application/pdf", PDF)
        dropped = await upload(running, user.user_id, "dropped.pdf", "application/pdf", PDF)
        thread_id = await turn(running, user.user_id, "Read", attachments=[kept, dropped])
        dropped_file, kept_file = sorted(fake.uploads, key=lambda file: file.filename)
        inputs = running.services.model_inputs
        key = inputs.files.key if inputs.files else ""

        response = await post(
            running.client,
            user.user_id,
            {"type": "attachments.delete", "params": {"attachment_id": dropped}},
        )
        assert response.status_code == 200, response.text
        assert fake.deleted == [dropped_file.id]
        assert await inputs.store.file_ids(user.user_id, key, [kept, dropped]) == {
            kept: kept_file.id
        }

        response = await post(
            running.client,
            user.user_id,
            {"type": "threads.delete", "params": {"thread_id": thread_id}},
        )
        assert response.status_code == 200, response.text
        assert fake.deleted == [dropped_file.id, kept_file.id]
        assert await inputs.store.file_ids(user.user_id, key, [kept]) == {}
    assert fake.files == {}


async def test_erasing_a_user_deletes_their_provider_copies_only(
    database_url, user, other_user
) -> None:
    async with FakeOpenAI() as fake, files_app(database_url, fake) as running:
        mine = await upload(running, user.user_id, "mine.pdf", "application/pdf", PDF)
        theirs = await upload(running, other_user.user_id, "theirs.pdf", "application/pdf", PDF)
        await turn(running, user.user_id, "Read", attachments=[mine])
        await turn(running, other_user.user_id, "Read", attachments=[theirs])
        my_file, their_file = fake.uploads

        # The user's erasure (DELETE /chatkit/me) reaches the provider before the rows go.
        erased = await running.client.request(
            "DELETE",
            "/chatkit/me",
            json={"confirm": "erase my data"},
            headers={"X-User-Id": user.user_id},
        )
        assert erased.status_code == 200, erased.text
        assert erased.json()["erased"]["provider_copies"] == 1
        assert fake.deleted == [my_file.id]  # theirs stays
        assert list(fake.files) == [their_file.id]


async def test_over_chat_completions_a_pdf_goes_by_file_id(database_url, user) -> None:
    async with FakeOpenAI() as fake, files_app(database_url, fake, "chat_completions") as running:
        pdf_id = await upload(running, user.user_id, "report.pdf", "application/pdf", PDF)
        image_id = await upload(running, user.user_id, "dot.png", "image/png", png())
        thread_id = await turn(running, user.user_id, "Read", attachments=[pdf_id, image_id])
        await turn(running, user.user_id, "Again", thread_id)

    [pdf_file] = fake.uploads  # images have no file ids in Chat Completions: they go inline
    for request in fake.streamed():
        [message, *_] = [m for m in request.body["messages"] if m["role"] == "user"]
        files = [part["file"] for part in message["content"] if part["type"] == "file"]
        assert [file["file_id"] for file in files] == [pdf_file.id]
        assert "file_data" not in files[0]
        assert any(part["type"] == "image_url" for part in message["content"])


async def test_ten_20_mb_files_keep_a_thread_working(database_url, user) -> None:
    size = 20_000_000
    async with FakeOpenAI() as fake, files_app(database_url, fake) as running:
        attachments = running.services.attachments
        digests, ids = [], []
        for n in range(10):
            data = bytes([n]) * size
            digests.append(hashlib.sha256(data).hexdigest())
            attachment = await attachments.add_uploaded(
                f"big{n}.pdf", "application/pdf", data, user
            )
            ids.append(attachment.id)
            del data
        thread_id = await turn(running, user.user_id, "Read all", attachments=ids)
        await turn(running, user.user_id, "Summarize again", thread_id)

    uploads = sorted(fake.uploads, key=lambda file: file.filename)
    assert [file.sha256 for file in uploads] == digests
    assert all(file.size == size for file in fake.uploads)
    first, second = fake.streamed()
    assert first.size < 10_000 and second.size < 10_000
    assert len(user_parts(second)) == 11


async def test_azure_gets_files_as_assistants_files_and_images_inline(database_url, user) -> None:
    async with FakeOpenAI() as fake:
        settings = make_settings(
            database_url,
            model_provider="azure",
            azure_openai_endpoint=fake.root_url,
            azure_openai_api_key="azure-secret-key",
            openai_api_version="2025-04-01-preview",
            chatkit_model="chat-deployment",
            openai_max_retries=0,
            attachment_allowed_mime_types="*/*",
        )
        async with running_app(settings) as running:
            pdf_id = await upload(running, user.user_id, "report.pdf", "application/pdf", PDF)
            image_id = await upload(running, user.user_id, "dot.png", "image/png", png())
            thread_id = await turn(running, user.user_id, "Read", attachments=[pdf_id, image_id])
            await turn(running, user.user_id, "Again", thread_id)

    [pdf_file] = fake.uploads
    assert (pdf_file.purpose, pdf_file.data) == ("assistants", PDF)
    for request in fake.streamed():
        assert request.path == "/openai/responses"
        pdf_part, image_part = user_parts(request)[1:]
        assert pdf_part == {"type": "input_file", "file_id": pdf_file.id, "filename": "report.pdf"}
        assert image_part["image_url"].startswith("data:image/png;base64,")


async def test_a_refused_upload_fails_its_own_turn_only(database_url, user) -> None:
    async with FakeOpenAI(refuse_uploads=True) as fake, files_app(database_url, fake) as running:
        pdf_id = await upload(running, user.user_id, "odd.pdf", "application/pdf", PDF)
        payload = {"type": "threads.create", "params": {"input": user_input("Read", [pdf_id])}}
        events = await stream(running.client, user.user_id, payload)
        [error] = error_events(events)
        thread_id = created_thread_id(events)
        await turn(running, user.user_id, "Never mind, hello", thread_id)

    assert fake.uploads == []
    [answered] = fake.streamed()  # the first turn never reached the model
    note = user_parts(answered, 0)[1]
    assert note["type"] == "input_text" and "refused the file 'odd.pdf'" in note["text"]
    assert error["message"]
