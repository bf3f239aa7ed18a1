"""Adapting the SDK's streamed turn: a clean end on failure, and our ids on model-named items.

`EndOnError`: `stream_agent_response` merges the run's events with the tools' event queue,
pulling each in an `asyncio` task of its own. If the run's stream raises, the queue's task is
abandoned, pending, and asyncio logs "Task was destroyed but it is pending" for every failed
turn. When the stream ends normally instead, the SDK cancels that task and drains the queue (so
the widgets a tool finished are still delivered); the error is re-raised after.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from agents import (
    InputGuardrailTripwireTriggered,
    OutputGuardrailTripwireTriggered,
    RunResultStreaming,
    StreamEvent,
)
from chatkit.store import StoreItemType
from chatkit.types import (
    AssistantMessageItem,
    ClientToolCallItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
)


def _consume_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a late StopAsyncIteration after a cancel is not an error


class EndOnError:
    """Stands in for `RunResultStreaming` in `stream_agent_response`; `error` holds the failure."""

    def __init__(self, result: RunResultStreaming) -> None:
        self.result = result
        self.error: Exception | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.result, name)

    async def stream_events(self) -> AsyncIterator[StreamEvent]:
        _watch_current_task()
        try:
            async for event in self.result.stream_events():
                yield event
                _watch_current_task()
        except (InputGuardrailTripwireTriggered, OutputGuardrailTripwireTriggered):
            raise  # the SDK removes what the run produced: let it
        except Exception as exc:
            self.error = exc


def _watch_current_task() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.add_done_callback(_consume_result)


class ItemIds:
    """Gives items the model names (assistant messages, client tool calls) our own ids.

    `stream_agent_response` reuses the provider's ids, which an OpenAI-compatible server may
    repeat across threads, and which the Agents SDK's Chat Completions model sets to one
    placeholder for every item; item ids are primary keys here, with at least 122 random bits.
    So each item the stream opens (or finishes without opening) gets a fresh id.

    A finished item also keeps the time it was opened: the SDK stamps the done event with the
    time it reads it, which can come after a tool the model called next has shown its widget,
    and the thread would then list the widget first.
    """

    def __init__(self, generate: Callable[[StoreItemType], str]) -> None:
        self.generate = generate
        self.ours: dict[str, str] = {}
        """The provider's id → our id of the latest item that had it."""
        self.opened: dict[str, datetime] = {}
        """Provider ids of items added and not yet done → when they were added."""

    def rewrite(self, event: ThreadStreamEvent) -> ThreadStreamEvent:
        if isinstance(event, ThreadItemAddedEvent | ThreadItemDoneEvent) and isinstance(
            event.item, AssistantMessageItem | ClientToolCallItem
        ):
            theirs = event.item.id
            if isinstance(event, ThreadItemAddedEvent) or theirs not in self.opened:
                kind: StoreItemType = (
                    "message" if isinstance(event.item, AssistantMessageItem) else "tool_call"
                )
                self.ours[theirs] = self.generate(kind)
            if isinstance(event, ThreadItemAddedEvent):
                self.opened[theirs] = event.item.created_at
                created_at = event.item.created_at
            else:
                created_at = self.opened.pop(theirs, event.item.created_at)
            item = event.item.model_copy(update={"id": self.ours[theirs], "created_at": created_at})
            return event.model_copy(update={"item": item})
        if (
            isinstance(event, ThreadItemUpdatedEvent | ThreadItemRemovedEvent)
            and event.item_id in self.ours
        ):
            return event.model_copy(update={"item_id": self.ours[event.item_id]})
        return event
