"""What asking first costs: a turn that pauses for approval, the click that resumes it, and the
size of the stored run state, against a turn whose tool runs at once.

Each turn is `POST /chatkit` in process, the fake model without delay:

- **direct**: `threads.create` whose model calls `complete_task` (no approval), then answers;
- **pause**: `threads.create` whose model calls `delete_task` (which asks first): the run stops,
  its state is serialized and stored, the approval widget is saved;
- **approve**: the widget's `approval.approve` action: the approval is locked and decided, the
  state restored, `delete_task` runs, the model answers.

Variants alternate, three rounds each (a fresh app per round); medians with the 10th–90th
percentile spread.

Run: `uv run python -m bench.approval_overhead [DATABASE_URL] [--turns N]` (a migrated database;
SQLite in a temporary directory if omitted).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from typing import Any
from uuid import uuid4

import httpx
from sqlalchemy import func, select

from app.agent.approvals import APPROVE_ACTION
from app.services import Services
from app.store.models import ApprovalRow
from tests.conftest import make_settings
from tests.helpers.apps import running_app
from tests.helpers.chatkit import (
    create_thread_req,
    created_thread_id,
    custom_action_req,
    done_items,
    post,
    sse_events,
)
from tests.helpers.database import migrate

ROUNDS = 3


async def timed(
    client: httpx.AsyncClient, user: str, payload: dict[str, Any]
) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    response = await post(client, user, payload)
    elapsed = (time.perf_counter() - start) * 1000
    assert response.status_code == 200, response.text
    return elapsed, response


async def one_round(
    services: Services, client: httpx.AsyncClient, turns: int
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"direct": [], "pause": [], "approve": []}
    for index in range(turns + 3):  # the first three warm up
        user = f"bench-{uuid4().hex[:8]}"
        task = await services.tasks.add(user, "A task")
        direct = f'/complete_task {{"task_id": "{task.id}"}}'
        elapsed_direct, _ = await timed(client, user, create_thread_req(direct))
        delete = f'/delete_task {{"task_id": "{task.id}"}}'
        elapsed_pause, paused = await timed(client, user, create_thread_req(delete))
        events = sse_events(paused)
        [card] = done_items(events, "widget")
        action = card["widget"]["children"][-1]["children"][0]["onClickAction"]
        assert action["type"] == APPROVE_ACTION
        click = custom_action_req(
            created_thread_id(events), card["id"], action["type"], action["payload"]
        )
        elapsed_approve, approved = await timed(client, user, click)
        assert "deleted" in approved.text and '"type":"error"' not in approved.text
        if index >= 3:
            times["direct"].append(elapsed_direct)
            times["pause"].append(elapsed_pause)
            times["approve"].append(elapsed_approve)
    return times


async def state_sizes(services: Services) -> list[int]:
    async with services.engine.connect() as conn:
        rows = await conn.execute(select(func.length(ApprovalRow.state)))
        return [int(size) for (size,) in rows]


async def main(url: str, turns: int) -> None:
    samples: dict[str, list[float]] = {"direct": [], "pause": [], "approve": []}
    settings = make_settings(
        url,
        rate_limit_requests_per_minute=0,
        rate_limit_daily_messages="*=unlimited",
        max_concurrent_streams_per_user=0,
    )
    sizes: list[int] = []
    for round_number in range(ROUNDS):
        async with running_app(settings) as running:
            running.services.assistant.title_model = None  # no title call in the figure
            times = await one_round(running.services, running.client, turns)
            sizes = await state_sizes(running.services)
        for name, values in times.items():
            samples[name] += values
        medians = ", ".join(f"{name} {statistics.median(v):.1f}" for name, v in times.items())
        out(f"round {round_number + 1}: medians (ms) {medians}")
    out("")
    out(f"{'request':10} {'median':>7} {'p10-p90':>15}")
    for name, values in samples.items():
        deciles = statistics.quantiles(values, n=10)
        out(f"{name:10} {statistics.median(values):6.1f}  {deciles[0]:6.1f}-{deciles[-1]:6.1f}")
    size = statistics.median(sizes)
    out(f"stored run state: median {size:.0f} characters ({len(sizes)} approvals)")


def out(line: str) -> None:
    sys.stdout.write(line + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("database", nargs="?")
    parser.add_argument("--turns", type=int, default=40)
    args = parser.parse_args()
    database = args.database or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/b.db"
    migrate(database)
    asyncio.run(main(database, args.turns))
