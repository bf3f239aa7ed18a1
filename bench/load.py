"""The load: C users each create a thread and send messages, reading every stream to its end."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Turn:
    first_event: float
    """Seconds from sending the request to the first SSE event."""
    latency: float
    """Seconds from sending the request to the end of the stream."""
    events: int
    error: str | None = None


@dataclass
class LoadResult:
    turns: list[Turn] = field(default_factory=list)
    wall: float = 0.0
    acknowledged: dict[str, int] = field(default_factory=dict)
    """Per thread id, how many assistant messages the streams announced as done."""

    @property
    def ok(self) -> list[Turn]:
        return [t for t in self.turns if t.error is None]

    @property
    def errors(self) -> list[str]:
        return [t.error for t in self.turns if t.error is not None]

    def summary(self) -> dict[str, float]:
        ok = self.ok
        ttfe = sorted(t.first_event for t in ok) or [float("nan")]
        lat = sorted(t.latency for t in ok) or [float("nan")]
        return {
            "turns": len(self.turns),
            "errors": len(self.errors),
            "turns_per_s": len(ok) / self.wall if self.wall else 0.0,
            "events_per_s": sum(t.events for t in ok) / self.wall if self.wall else 0.0,
            "ttfe_p50_ms": 1000 * statistics.median(ttfe),
            "ttfe_p99_ms": 1000 * percentile(ttfe, 0.99),
            "turn_p50_ms": 1000 * statistics.median(lat),
            "turn_p99_ms": 1000 * percentile(lat, 0.99),
        }


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def user_input(text: str) -> dict[str, Any]:
    return {
        "content": [{"type": "input_text", "text": text}],
        "attachments": [],
        "inference_options": {},
    }


async def stream_turn(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], payload: dict[str, Any]
) -> tuple[Turn, list[dict[str, Any]]]:
    """Send one streaming request and read it to its end."""
    started = time.perf_counter()
    first: float | None = None
    events: list[dict[str, Any]] = []
    try:
        async with client.stream("POST", url, json=payload, headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                return Turn(0, 0, 0, f"HTTP {response.status_code}: {response.text[:120]}"), []
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if first is None:
                    first = time.perf_counter()
                events.append(json.loads(line[6:]))
    except httpx.HTTPError as exc:
        return Turn(0, 0, len(events), f"{type(exc).__name__}: {exc}"), events
    end = time.perf_counter()
    error = next((e.get("message") or e.get("code") for e in events if e["type"] == "error"), None)
    turn = Turn(
        (first or end) - started, end - started, len(events), error and f"error event: {error}"
    )
    return turn, events


async def run_load(
    base_url: str | Sequence[str],
    users: int,
    messages: int,
    headers_for: Callable[[int], dict[str, str]],
    request_timeout: float = 120.0,
) -> LoadResult:
    """Every user creates a thread, then sends `messages - 1` more messages, one after another.

    With several base URLs (replicas of one server on one database), user n talks to the n-th
    one, round robin, as a load balancer would spread them.
    """
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    result = LoadResult()
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout: a request sent on a
    # connection the server is closing at that moment fails with a ReadError (a browser retries
    # it; httpx does not retry a POST).
    limits = httpx.Limits(
        max_connections=users + 10, max_keepalive_connections=users + 10, keepalive_expiry=2.0
    )
    async with httpx.AsyncClient(timeout=request_timeout, limits=limits) as client:

        async def one_user(n: int) -> None:
            headers = headers_for(n)
            url = f"{urls[n % len(urls)]}/chatkit"
            thread_id: str | None = None
            for m in range(messages):
                if thread_id is None:
                    payload = {"type": "threads.create", "params": {"input": user_input(f"hi {m}")}}
                else:
                    payload = {
                        "type": "threads.add_user_message",
                        "params": {"thread_id": thread_id, "input": user_input(f"msg {m}")},
                    }
                turn, events = await stream_turn(client, url, headers, payload)
                result.turns.append(turn)
                for event in events:
                    if event["type"] == "thread.created":
                        thread_id = event["thread"]["id"]
                    elif (
                        event["type"] == "thread.item.done"
                        and event["item"]["type"] == "assistant_message"
                        and thread_id
                    ):
                        done = result.acknowledged.get(thread_id, 0)
                        result.acknowledged[thread_id] = done + 1
                if thread_id is None:
                    return

        started = time.perf_counter()
        await asyncio.gather(*(one_user(n) for n in range(users)))
        result.wall = time.perf_counter() - started
    return result
