"""A conversation as the terminal client holds it: the current thread, the files for the next
message, and the turn loop that answers client tool calls.

Protocol only: every event goes to a `TurnView`, which decides what to show.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chatkit.types import (
    Attachment,
    ClientToolCallItem,
    ErrorEvent,
    Page,
    ThreadCreatedEvent,
    ThreadItem,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
)

from app.chat.client import ChatKitClient, ChatKitError


class TurnView(Protocol):
    """Where a turn's events go as they arrive."""

    def show(self, event: ThreadStreamEvent) -> None: ...

    def client_tool(self, call: ClientToolCallItem, result: Any) -> None:
        """The assistant asked this client to run a tool; `result` is what it answers."""


@dataclass
class TurnOutcome:
    thread_id: str | None
    error: ErrorEvent | None = None
    """The turn's error event, if it ended with one."""


def answer_client_tool(call: ClientToolCallItem) -> dict[str, Any]:
    """This client's answer to a client tool call.

    The server's client tool is `switch_theme`: a terminal keeps its own colours, so the request
    is acknowledged. Any other tool is answered with a refusal, so the turn can go on.
    """
    if call.name == "switch_theme":
        return {"success": True, "theme": call.arguments.get("theme")}
    return {"success": False, "error": f"The terminal client cannot run {call.name}."}


class Conversation:
    """One user's current thread (None: the next message starts one) and pending attachments."""

    def __init__(self, client: ChatKitClient, thread_id: str | None = None) -> None:
        self.client = client
        self.thread_id = thread_id
        self.attachments: list[Attachment] = []
        self.last_user_item_id: str | None = None
        """The newest user message of this thread seen here: what a retry answers again."""

    def new(self) -> None:
        self.thread_id = None
        self.last_user_item_id = None

    async def threads(self, limit: int = 20, after: str | None = None) -> Page[ThreadMetadata]:
        return await self.client.list_threads(limit, after)

    async def switch(self, thread_id: str, history: int = 10) -> list[ThreadItem]:
        """Make `thread_id` current; returns its last `history` items, oldest first."""
        page = await self.client.list_items(thread_id, limit=history, order="desc")
        if not page.data:  # another user's thread, or a missing one, lists as empty
            await self.client.get_thread(thread_id)  # a 404 says which
        self.thread_id = thread_id
        self.last_user_item_id = None
        return list(reversed(page.data))

    async def attach(self, path: Path) -> Attachment:
        """Upload a file now; it goes with the next message."""
        attachment = await self.client.upload(path)
        self.attachments.append(attachment)
        return attachment

    async def send(self, text: str, view: TurnView) -> TurnOutcome:
        """Send a message (with the pending attachments) and play the turn to its end."""
        ids = [attachment.id for attachment in self.attachments]
        if self.thread_id is None:
            events = self.client.create_thread(text, ids)
        else:
            events = self.client.add_user_message(self.thread_id, text, ids)
        outcome = await self._play(events, view)
        self.attachments = []  # kept when the server refused the message outright
        return outcome

    async def stop(self) -> None:
        """Stop the current thread's answer, as Ctrl-C asks (the server keeps what was said)."""
        if self.thread_id is not None:
            await self.client.stop(self.thread_id)

    async def retry(self, view: TurnView) -> TurnOutcome:
        """Answer the last user message again (after an error event that allows a retry)."""
        if self.thread_id is None or self.last_user_item_id is None:
            raise ChatKitError("There is no message of this session to retry.")
        events = self.client.retry_after_item(self.thread_id, self.last_user_item_id)
        return await self._play(events, view)

    async def _play(self, events: AsyncIterator[ThreadStreamEvent], view: TurnView) -> TurnOutcome:
        """Show the events; a pending client tool call is answered, and the turn goes on."""
        outcome = TurnOutcome(self.thread_id)
        while True:
            call: ClientToolCallItem | None = None
            async for event in events:
                view.show(event)
                match event:
                    case ThreadCreatedEvent():
                        self.thread_id = outcome.thread_id = event.thread.id
                    case ThreadItemDoneEvent(item=UserMessageItem() as item):
                        self.last_user_item_id = item.id
                    case ThreadItemDoneEvent(item=ClientToolCallItem(status="pending") as item):
                        call = item
                    case ErrorEvent():
                        outcome.error = event
            if call is None:
                return outcome
            result = answer_client_tool(call)
            view.client_tool(call, result)
            events = self.client.add_client_tool_output(call.thread_id, result)
