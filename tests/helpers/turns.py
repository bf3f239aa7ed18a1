"""Reading turns over HTTP in tests: SSE events with their ids, a client that leaves mid-answer,
the thread as a reload sees it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tests.helpers.chatkit import post

POLL_SECONDS = 0.02
DEADLINE_SECONDS = 60.0


@dataclass(frozen=True)
class Event:
    id: str | None
    data: dict[str, Any]

    @property
    def type(self) -> str:
        kind: str = self.data["type"]
        return kind

    @property
    def seq(self) -> int:
        assert self.id is not None
        return int(self.id.rpartition(".")[2])

    @property
    def delta(self) -> str:
        if self.type == "thread.item.updated" and "delta" in self.data["update"]:
            text: str = self.data["update"]["delta"]
            return text
        return ""


async def events_of(response: httpx.Response) -> AsyncIterator[Event]:
    """The SSE events of a streaming response as they arrive; comments skipped."""
    event_id: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            event_id = line[len("id: ") :]
        elif line.startswith("data: "):
            data.append(line[len("data: ") :])
        elif not line and data:
            yield Event(event_id, json.loads("\n".join(data)))
            event_id, data = None, []


async def read_until(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    user_id: str,
    *,
    body: Any = None,
    stop: Callable[[list[Event]], bool] = lambda _: False,
) -> list[Event]:
    """Stream a request; leave as soon as `stop(events so far)` holds (else read to the end)."""
    headers = {"X-User-Id": user_id, "Content-Type": "application/json"}
    content = json.dumps(body) if body is not None else None
    events: list[Event] = []
    async with client.stream(method, url, content=content, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        async for event in events_of(response):
            events.append(event)
            if stop(events):
                break
    return events


def deltas(count: int) -> Callable[[list[Event]], bool]:
    """Stop after `count` text deltas."""
    return lambda events: sum(1 for e in events if e.delta) >= count


def text_of(events: list[Event]) -> str:
    return "".join(e.delta for e in events)


def thread_of(events: list[Event]) -> str:
    thread_id: str = next(e for e in events if e.type == "thread.created").data["thread"]["id"]
    return thread_id


async def get_thread(client: httpx.AsyncClient, user_id: str, thread_id: str) -> dict[str, Any]:
    """The thread and its items as a reload of the page sees them (`threads.get_by_id`)."""
    request = {"type": "threads.get_by_id", "params": {"thread_id": thread_id}}
    response = await post(client, user_id, request)
    assert response.status_code == 200, response.text
    thread: dict[str, Any] = response.json()
    return thread


async def wait_for_thread(
    client: httpx.AsyncClient,
    user_id: str,
    thread_id: str,
    ready: Callable[[dict[str, Any]], bool],
) -> dict[str, Any]:
    """Reload until `ready(thread)`; fail after a generous deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    while True:
        thread = await get_thread(client, user_id, thread_id)
        if ready(thread):
            return thread
        assert loop.time() < deadline, thread
        await asyncio.sleep(POLL_SECONDS)


def is_active(thread: dict[str, Any]) -> bool:
    return bool(thread["status"]["type"] == "active")


def item_types(thread: dict[str, Any]) -> list[str]:
    return [item["type"] for item in thread["items"]["data"]]


def answer_text(thread: dict[str, Any]) -> str:
    """The text of the thread's (last) assistant message."""
    messages = [i for i in thread["items"]["data"] if i["type"] == "assistant_message"]
    return "".join(part["text"] for part in messages[-1]["content"]) if messages else ""
