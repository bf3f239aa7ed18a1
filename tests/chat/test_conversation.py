"""The client's protocol layer (`ChatKitClient`, `Conversation`) against a real server process:
what it receives as the server streams, and what the database holds afterwards."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from chatkit.types import (
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ClientToolCallItem,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
    UserMessageItem,
    WidgetItem,
)
from rich.console import Console

from app.agent.errors import NOT_CONFIGURED
from app.chat.client import ChatKitClient, HTTPError
from app.chat.conversation import Conversation
from app.chat.render import TurnRenderer, widget_text
from tests.chat.conftest import DOMAIN_KEY, FAKE_MODEL_TOKENS, Stored
from tests.conftest import make_settings
from tests.helpers.apps import running_app
from tests.helpers.server import ServerProcess


@dataclass
class Recorder:
    """A `TurnView` that keeps every event with the time it arrived."""

    events: list[tuple[float, ThreadStreamEvent]] = field(default_factory=list)
    tool_calls: list[tuple[ClientToolCallItem, Any]] = field(default_factory=list)

    def show(self, event: ThreadStreamEvent) -> None:
        self.events.append((time.monotonic(), event))

    def client_tool(self, call: ClientToolCallItem, result: Any) -> None:
        self.tool_calls.append((call, result))

    def deltas(self) -> list[tuple[float, str]]:
        return [
            (at, event.update.delta)
            for at, event in self.events
            if isinstance(event, ThreadItemUpdatedEvent)
            and isinstance(event.update, AssistantMessageContentPartTextDelta)
        ]

    def done(self, kind: type[Any]) -> list[Any]:
        return [
            event.item
            for _, event in self.events
            if isinstance(event, ThreadItemDoneEvent) and isinstance(event.item, kind)
        ]


@asynccontextmanager
async def conversation_of(url: str, user: str, **options: Any) -> AsyncIterator[Conversation]:
    async with ChatKitClient(url, user=user, **options) as client:
        yield Conversation(client)


def assistant_texts(items: list[Any]) -> list[str]:
    return [item.content[0].text for item in items if isinstance(item, AssistantMessageItem)]


async def test_the_answer_streams_word_by_word_and_is_stored(
    chat_url: str, user_id: str, stored: Stored
) -> None:
    view = Recorder()
    async with conversation_of(chat_url, user_id) as conversation:
        outcome = await conversation.send("Hello there", view)

    assert outcome.error is None
    deltas = view.deltas()
    assert len(deltas) == FAKE_MODEL_TOKENS
    # The words arrived over time (the model's pace), not in one buffered piece.
    assert deltas[-1][0] - deltas[0][0] > 0.2
    (answer,) = view.done(AssistantMessageItem)
    text = "".join(delta for _, delta in deltas)
    assert answer.content[0].text == text
    assert text.startswith("You said: Hello there")

    assert outcome.thread_id is not None
    assert outcome.thread_id == conversation.thread_id
    items = await stored.items(user_id, outcome.thread_id)
    assert [type(item) for item in items] == [UserMessageItem, AssistantMessageItem]
    assert assistant_texts(items) == [text]


async def test_the_live_renderer_shows_the_answer_in_a_terminal(
    chat_url: str, user_id: str
) -> None:
    screen, notes = io.StringIO(), io.StringIO()
    out = Console(file=screen, force_terminal=True, width=100)
    err = Console(file=notes, force_terminal=True, width=100)
    async with ChatKitClient(chat_url, user=user_id) as client:
        with TurnRenderer(out, err) as view:
            assert view.live
            await Conversation(client).send("Render *this*", view)

    # rich drew the Markdown (the emphasis as italics) in place, and the title arrived too.
    assert "You said: Render \x1b[3mthis\x1b[0m" in screen.getvalue()
    assert "Title: Render *this*" in notes.getvalue()


async def test_threads_are_listed_in_pages_and_a_switch_continues_the_chosen_one(
    chat_url: str, user_id: str, stored: Stored
) -> None:
    view = Recorder()
    async with conversation_of(chat_url, user_id) as conversation:
        for text in ("first", "second", "third"):
            conversation.new()
            await conversation.send(text, view)

        first_page = await conversation.threads(limit=2)
        assert [thread.title for thread in first_page.data] == ["third", "second"]
        assert first_page.has_more
        second_page = await conversation.threads(limit=2, after=first_page.after)
        assert [thread.title for thread in second_page.data] == ["first"]
        assert not second_page.has_more

        oldest = second_page.data[0].id
        history = await conversation.switch(oldest)
        assert [type(item) for item in history] == [UserMessageItem, AssistantMessageItem]
        assert history[0].content[0].text == "first"
        await conversation.send("back to the first", view)

    items = await stored.items(user_id, oldest)
    assert [item.content[0].text for item in items if isinstance(item, UserMessageItem)] == [
        "first",
        "back to the first",
    ]
    assert len(await stored.thread_ids(user_id)) == 3


async def test_switching_to_another_users_thread_is_refused(chat_url: str, user_id: str) -> None:
    async with ChatKitClient(chat_url, user=user_id) as owner:
        outcome = await Conversation(owner).send("mine", Recorder())
    async with ChatKitClient(chat_url, user=f"{user_id}-other") as intruder:
        conversation = Conversation(intruder)
        with pytest.raises(HTTPError) as refused:
            await conversation.switch(outcome.thread_id or "")
    assert refused.value.status == 404
    assert refused.value.message == f"Thread {outcome.thread_id} not found"
    assert conversation.thread_id is None


async def test_an_attachment_is_uploaded_in_two_phases_and_goes_with_the_next_message(
    chat_url: str, user_id: str, stored: Stored, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"remember the milk\n")
    async with conversation_of(chat_url, user_id) as conversation:
        attachment = await conversation.attach(notes)
        assert attachment.upload_descriptor is None  # the bytes are in
        assert await stored.content(user_id, attachment.id) == b"remember the milk\n"
        outcome = await conversation.send("What is in the file?", Recorder())
        assert conversation.attachments == []  # sent: not attached to the next message again

    items = await stored.items(user_id, outcome.thread_id or "")
    message = items[0]
    assert isinstance(message, UserMessageItem)
    assert [(a.id, a.name, a.mime_type) for a in message.attachments] == [
        (attachment.id, "notes.txt", "text/plain")
    ]
    assert (await stored.attachment(user_id, attachment.id)).thread_id == outcome.thread_id


async def test_the_model_is_given_the_uploaded_file(
    chat_database_url: str, user_id: str, tmp_path: Path
) -> None:
    """The same upload, served by uvicorn inside this process, so the fake model can be read."""
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"remember the milk\n")
    async with running_app(make_settings(chat_database_url), socket=True) as running:
        model = running.fake_model
        url = str(running.client.base_url.join("/chatkit"))
        async with conversation_of(url, user_id) as conversation:
            await conversation.attach(notes)
            await conversation.send("What is in the file?", Recorder())

    (call,) = model.script.calls
    (message,) = call.input
    content: list[dict[str, Any]] = cast(dict[str, Any], message)["content"]
    parts = {part["type"]: part for part in content}
    assert parts["input_text"]["text"] == "What is in the file?"
    assert parts["input_file"]["filename"] == "notes.txt"
    expected = base64.b64encode(b"remember the milk\n").decode()
    assert parts["input_file"]["file_data"] == f"data:text/plain;base64,{expected}"


async def test_a_widget_is_read_as_text(chat_url: str, user_id: str, stored: Stored) -> None:
    view = Recorder()
    async with ChatKitClient(chat_url, user=user_id) as client:
        await Conversation(client).send('/add_task {"title": "Buy milk"}', view)

    (widget,) = view.done(WidgetItem)
    assert widget_text(widget) == "[ ] Buy milk"
    assert [task.title for task in await stored.task_list(user_id)] == ["Buy milk"]


async def test_a_client_tool_call_is_answered_and_the_turn_goes_on(
    chat_url: str, user_id: str, stored: Stored
) -> None:
    view = Recorder()
    async with ChatKitClient(chat_url, user=user_id) as client:
        outcome = await Conversation(client).send('/switch_theme {"theme": "dark"}', view)

    ((call, result),) = view.tool_calls
    assert (call.name, call.arguments) == ("switch_theme", {"theme": "dark"})
    assert result == {"success": True, "theme": "dark"}
    # The model got the answer and replied to it, in the same turn.
    reply = view.done(AssistantMessageItem)[-1].content[0].text
    assert reply.startswith("The tool answered: ")
    assert json.loads(reply.removeprefix("The tool answered: ")) == result
    items = await stored.items(user_id, outcome.thread_id or "")
    (stored_call,) = [item for item in items if isinstance(item, ClientToolCallItem)]
    assert stored_call.status == "completed"
    assert stored_call.output == {"success": True, "theme": "dark"}


async def test_an_error_event_ends_the_turn_readably(
    unconfigured_server: ServerProcess, user_id: str
) -> None:
    view = Recorder()
    url = f"{unconfigured_server.base_url}/chatkit"
    async with conversation_of(url, user_id, domain_key=DOMAIN_KEY) as conversation:
        outcome = await conversation.send("Hello", view)
        assert outcome.error is not None
        assert outcome.error.message == NOT_CONFIGURED
        assert outcome.error.allow_retry is False

        # The daily quota (one message) is spent: the next one is refused before it starts.
        with pytest.raises(HTTPError) as refused:
            await conversation.send("Hello again", view)
    assert refused.value.status == 429
    assert refused.value.code == "quota_exceeded"
    assert "The quota resets at 00:00 UTC" in refused.value.message


async def test_a_request_without_identity_is_a_readable_401(chat_url: str) -> None:
    async with ChatKitClient(chat_url) as client:
        with pytest.raises(HTTPError) as refused:
            await client.list_threads()
    assert refused.value.status == 401
    assert refused.value.code == "unauthorized"
    assert str(refused.value).startswith("HTTP 401 unauthorized: Authentication required")
