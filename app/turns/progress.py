"""Saving a streaming answer in bounded steps, so a reload mid-answer shows what exists so far.

The SDK saves an item when it is done. Between, this saves the assistant message being written
at most every `TURN_PROGRESS_SECONDS` (never on every delta), under the item's own id: the SDK's
final save replaces it, so a reload never shows an item twice. A turn that fails leaves none of
its unfinished messages behind (the SDK saves none either); a cancelled one is the SDK's to save.
"""

from __future__ import annotations

import json
import time
from typing import Any

from chatkit.types import AssistantMessageContent, AssistantMessageItem

from app.context import RequestContext
from app.store.store import TURN_LOCK_REASON, SQLAlchemyStore

ACTIVE = {"type": "active"}


class Progress:
    """What one turn has streamed of its unfinished assistant messages, and what was saved."""

    def __init__(self, store: SQLAlchemyStore, context: RequestContext, every: float) -> None:
        self.store = store
        self.context = context
        self.every = every
        self.thread_id: str | None = None
        self.pending: dict[str, AssistantMessageItem] = {}
        self.saved: set[str] = set()
        self.dirty = False
        self.last_save = time.monotonic()

    async def see(self, data: bytes) -> bytes:
        """Follow one SDK event (`data: {...}\\n\\n`); save if due; return the event to send.

        A `thread.updated` event never tells the streaming client that its own thread is
        locked: the lock is for readers elsewhere, and is gone when the turn ends.
        """
        event = parse(data)
        if event is None:
            return data
        kind = event.get("type")
        if kind == "thread.created":
            self.thread_id = event["thread"]["id"]
        elif kind == "thread.updated":
            status = event["thread"].get("status", {})
            if status.get("type") == "locked" and status.get("reason") == TURN_LOCK_REASON:
                event["thread"]["status"] = ACTIVE
                return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"
        elif kind == "thread.item.added" and event["item"].get("type") == "assistant_message":
            item = AssistantMessageItem.model_validate(event["item"])
            self.thread_id = item.thread_id
            self.pending[item.id] = item
        elif kind == "thread.item.updated" and event.get("item_id") in self.pending:
            self._apply(self.pending[event["item_id"]], event["update"])
            self.dirty = True
        elif kind == "thread.item.done":
            item_id = event["item"].get("id")
            self.pending.pop(item_id, None)
            self.saved.discard(item_id)  # the SDK saved it whole before sending this
        elif kind == "thread.item.removed":
            self.pending.pop(str(event.get("item_id")), None)
            self.saved.discard(str(event.get("item_id")))
        if self.dirty and time.monotonic() - self.last_save >= self.every:
            await self.save()
        return data

    async def save(self) -> None:
        """Save every unfinished assistant message that has text."""
        self.dirty, self.last_save = False, time.monotonic()
        for item in list(self.pending.values()):
            if any(part.text.strip() for part in item.content):
                await self.store.add_thread_item(item.thread_id, item, self.context)
                self.saved.add(item.id)

    async def discard(self) -> None:
        """Delete the partial saves of messages that never finished (the turn failed)."""
        for item_id in list(self.saved):
            item = self.pending.get(item_id)
            if item is not None:
                await self.store.delete_thread_item(item.thread_id, item_id, self.context)
        self.saved.clear()

    @staticmethod
    def _apply(item: AssistantMessageItem, update: dict[str, Any]) -> None:
        index = update.get("content_index", 0)
        while len(item.content) <= index:
            item.content.append(AssistantMessageContent(text=""))
        kind = update.get("type")
        if kind == "assistant_message.content_part.text_delta":
            item.content[index].text += update.get("delta", "")
        elif kind in {
            "assistant_message.content_part.added",
            "assistant_message.content_part.done",
        }:
            item.content[index] = AssistantMessageContent.model_validate(update["content"])


def parse(data: bytes) -> dict[str, Any] | None:
    """The JSON of an SDK event chunk, if it is one."""
    if not data.startswith(b"data: "):
        return None
    try:
        value = json.loads(data[len(b"data: ") :])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
