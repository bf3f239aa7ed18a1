"""Attachments sent inline, where the provider has no Files API: images scaled down once and
kept, and a byte budget per request past which older attachments become a note (the local
OpenAI stand-in without its Files API, PostgreSQL and SQLite)."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from chatkit.types import ThreadMetadata, UserMessageItem, UserMessageTextContent
from PIL import Image

from app.agent.attachments import data_url_size
from app.store.store import new_id
from tests.agent.test_model_files import turn, upload, user_parts
from tests.conftest import make_settings
from tests.helpers.apps import RunningApp, running_app
from tests.helpers.fake_openai import FakeOpenAI

BUDGET = 1024 * 1024


@asynccontextmanager
async def inline_app(
    database_url: str, fake: FakeOpenAI, **overrides: Any
) -> AsyncIterator[RunningApp]:
    settings = make_settings(
        database_url,
        model_provider="openai",
        openai_base_url=fake.base_url,
        openai_max_retries=0,
        model_files_api="auto",  # a server other than OpenAI's: no Files API
        attachment_allowed_mime_types="*/*",
        attachment_inline_budget_bytes=BUDGET,
        **overrides,
    )
    async with running_app(settings) as running:
        assert running.services.model_inputs.files is None
        yield running


def pdf(n: int, size: int) -> bytes:
    return b"%PDF-1.4\n" + bytes([n]) * size


async def test_older_attachments_past_the_budget_become_notes(database_url, user) -> None:
    size = 300_000  # about 400 kB encoded: two fit in the budget, three do not
    async with FakeOpenAI(apis=("responses",)) as fake, inline_app(database_url, fake) as running:
        thread_id = None
        for n in range(5):
            attachment_id = await upload(
                running, user.user_id, f"report{n}.pdf", "application/pdf", pdf(n, size)
            )
            thread_id = await turn(running, user.user_id, f"Read {n}", thread_id, [attachment_id])

    requests = fake.streamed()
    assert fake.uploads == []
    for request in requests:
        assert request.size < BUDGET + 20_000  # a turn carries at most the budget
    last = requests[-1]
    sent = [user_parts(last, index)[1] for index in range(5)]
    for n, part in enumerate(sent[:3]):
        assert part["type"] == "input_text"
        assert f"'report{n}.pdf'" in part["text"] and "you saw it then" in part["text"]
    for n, part in enumerate(sent[3:], start=3):
        data = base64.b64encode(pdf(n, size)).decode()
        assert part == {
            "type": "input_file",
            "file_data": f"data:application/pdf;base64,{data}",
            "filename": f"report{n}.pdf",
        }


async def test_a_new_message_always_carries_its_attachments(database_url, user) -> None:
    async with FakeOpenAI(apis=("responses",)) as fake, inline_app(database_url, fake) as running:
        big = await upload(running, user.user_id, "big.pdf", "application/pdf", pdf(1, 2 * BUDGET))
        thread_id = await turn(running, user.user_id, "Read", attachments=[big])
        await turn(running, user.user_id, "And?", thread_id)

    first, second = fake.streamed()
    assert user_parts(first)[1]["type"] == "input_file"
    assert user_parts(second)[1]["type"] == "input_text"  # older now, and past the budget
    assert second.size < 10_000


async def test_images_are_scaled_to_2048_px_once(database_url, user) -> None:
    out = io.BytesIO()
    Image.linear_gradient("L").resize((3000, 2000)).convert("RGB").save(out, format="PNG")
    original = out.getvalue()
    async with FakeOpenAI(apis=("responses",)) as fake, inline_app(database_url, fake) as running:
        image_id = await upload(running, user.user_id, "wide.png", "image/png", original)
        thread_id = await turn(running, user.user_id, "Look", attachments=[image_id])
        await turn(running, user.user_id, "Again", thread_id)
        store = running.services.model_inputs.store
        rendition = await store.rendition(user.user_id, image_id)

    assert rendition is not None and rendition.mime_type == "image/jpeg"
    first, second = fake.streamed()
    urls = [user_parts(request)[1]["image_url"] for request in (first, second)]
    assert urls[0] == urls[1]
    prefix = "data:image/jpeg;base64,"
    assert urls[0].startswith(prefix)
    sent = base64.b64decode(urls[0][len(prefix) :])
    assert sent == rendition.data
    assert Image.open(io.BytesIO(sent)).size == (2048, 1365)


async def test_ten_20_mb_files_in_the_history_keep_the_thread_working(database_url, user) -> None:
    size = 20_000_000
    async with FakeOpenAI(apis=("responses",)) as fake, inline_app(database_url, fake) as running:
        services = running.services
        thread = ThreadMetadata(id=new_id("thread"), created_at=datetime.now())
        await services.store.save_thread(thread, user)
        attachments = []
        for n in range(10):
            attachment = await services.attachments.add_uploaded(
                f"big{n}.pdf", "application/pdf", pdf(n, size), user
            )
            attachment.thread_id = thread.id
            await services.store.save_attachment(attachment, user)
            attachments.append(attachment)
        message = UserMessageItem(
            id=new_id("message"),
            thread_id=thread.id,
            created_at=datetime.now() - timedelta(minutes=1),
            content=[UserMessageTextContent(text="Here are ten files")],
            attachments=attachments,
            inference_options={},
        )
        await services.store.add_thread_item(thread.id, message, user)

        await turn(running, user.user_id, "Summarize them", thread.id)
        await turn(running, user.user_id, "Once more", thread.id)

    for request in fake.streamed():
        assert request.size < 20_000
        notes = user_parts(request)[1:]
        assert [part["type"] for part in notes] == ["input_text"] * 10
    assert data_url_size("application/pdf", size) > BUDGET
