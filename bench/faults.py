"""Fault runs: what a failure loses must be nothing that was acknowledged.

    uv run python -m bench.faults            # every scenario
    uv run python -m bench.faults --only model-500 disconnect

Scenarios: PostgreSQL restarted under load (on a cluster of its own, made with `initdb` and
restarted with `pg_ctl`: the machine's PostgreSQL is never touched), the model endpoint answering
500 / 429 / dropping the stream, clients disconnecting mid-stream (one, and 50 at once: every
answer must still end complete in the database, with no lock left behind), 50 users writing
concurrently, and 2 writers racing on one thread.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx

from bench.load import run_load, stream_turn, user_input
from bench.processes import start, start_model_endpoint
from bench.run import RESULTS, bearer, server_env, token_headers
from bench.verify import lost, stored_counts
from tests.helpers.database import fresh_postgres_database, migrate
from tests.helpers.postgres_cluster import PostgresCluster, postgres_bin_dir
from tests.helpers.server import ServerProcess, free_port

PHASE_SECONDS = 1.5


class Bench:
    """One model endpoint and one server on a fresh database; restartable per scenario."""

    def __init__(self) -> None:
        self.db = fresh_postgres_database("chatkit_faults")
        migrate(self.db)
        self.processes: list[ServerProcess] = []

    def serve(
        self,
        failure: str | None = None,
        tokens: int = 30,
        delay_ms: float = 10,
        database_url: str | None = None,
    ) -> str:
        self.stop()
        port = free_port()
        flags = ["--failure", failure] if failure else []
        model = start_model_endpoint(RESULTS / "faults-model.log", tokens, delay_ms, *flags)
        server = start(
            ["-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)],
            server_env(database_url or self.db, f"{model.base_url}/v1", port),
            port,
            RESULTS / "faults-server.log",
        )
        self.processes = [model, server]
        return server.base_url

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes = []


async def postgres_restart(bench: Bench) -> dict[str, Any]:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        return {"skipped": "PostgreSQL server binaries (initdb, pg_ctl) are not installed"}
    cluster = PostgresCluster(bin_dir).init()
    try:
        cluster.start()
        database_url = cluster.create_database("chatkit_faults")
        await asyncio.to_thread(migrate, database_url)  # alembic runs its own event loop
        outcome = await restart_under_load(bench, cluster, database_url)
    finally:
        bench.stop()
        cluster.destroy()
    # Read once the server has exited: asyncio reports abandoned tasks when it collects them.
    server_log = (RESULTS / "faults-server.log").read_text(errors="replace")
    outcome["tasks_left_pending"] = server_log.count("Task was destroyed but it is pending")
    return outcome


async def restart_under_load(
    bench: Bench, cluster: PostgresCluster, database_url: str
) -> dict[str, Any]:
    url = bench.serve(tokens=30, delay_ms=20, database_url=database_url)
    statuses: list[int] = []

    async def restart() -> None:
        """`pg_ctl restart -m fast` as it goes on a real database, each step stretched over
        `PHASE_SECONDS` (this tiny cluster would be back within a fraction of a second): every
        session is ended (57P01), new ones are refused while the shutdown checkpoint runs
        (57P03), the server is down (connections refused), then it is back."""
        holder = await asyncpg.connect(cluster.admin_url)  # keeps the shutdown from finishing
        try:
            await asyncio.to_thread(cluster.stop, "smart", wait=False)
            await holder.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            await asyncio.sleep(PHASE_SECONDS)
        finally:
            await asyncio.to_thread(cluster.stop, "fast")
            holder.terminate()
        await asyncio.sleep(PHASE_SECONDS)
        await asyncio.to_thread(cluster.start)

    async def restart_during_load() -> None:
        await asyncio.sleep(2)
        restart_task = asyncio.create_task(restart())
        async with httpx.AsyncClient(base_url=url, timeout=2) as client:
            for _ in range(40):
                try:
                    statuses.append((await client.get("/readyz")).status_code)
                except httpx.HTTPError:
                    statuses.append(0)
                await asyncio.sleep(0.25)
        await restart_task

    load, _ = await asyncio.gather(run_load(url, 20, 6, token_headers), restart_during_load())
    after = await run_load(url, 5, 2, lambda n: bearer(f"after-restart-{n}"))
    return {
        "turns": len(load.turns),
        "failed_turns": len(load.errors),
        "http_500": sum(1 for error in load.errors if error.startswith("HTTP 500")),
        "http_503": sum(1 for error in load.errors if error.startswith("HTTP 503")),
        "error_events": sum(1 for error in load.errors if error.startswith("error event")),
        "failures_seen": sorted({error[:60] for error in load.errors})[:4],
        "readyz_saw_503": 503 in statuses,
        "readyz_recovered": statuses[-1:] == [200],
        "turns_after_restart_ok": len(after.ok) == len(after.turns),
        "lost_acknowledged": await lost(database_url, load),
    }


async def new_thread(
    client: httpx.AsyncClient, headers: dict[str, str], text: str
) -> tuple[list[dict[str, Any]], str]:
    """A `threads.create` turn: its events, and the new thread's id."""
    payload = {"type": "threads.create", "params": {"input": user_input(text)}}
    _, events = await stream_turn(client, "/chatkit", headers, payload)
    thread_id = next(e["thread"]["id"] for e in events if e["type"] == "thread.created")
    return events, thread_id


async def stored_items(
    client: httpx.AsyncClient, headers: dict[str, str], thread_id: str
) -> list[dict[str, Any]]:
    """The thread's items, as `items.list` returns them."""
    payload = {"type": "items.list", "params": {"thread_id": thread_id, "order": "asc"}}
    items: list[dict[str, Any]] = (
        await client.post("/chatkit", json=payload, headers=headers)
    ).json()["data"]
    return items


async def model_failure(bench: Bench, failure: str) -> dict[str, Any]:
    url = bench.serve(failure=failure)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        headers = bearer(f"model-{failure}")
        events, thread_id = await new_thread(client, headers, "hello")
        items = await stored_items(client, headers, thread_id)
    error = next((e for e in events if e["type"] == "error"), None)
    return {
        "error_event": error and (error.get("message") or error.get("code")),
        "allow_retry": error and error.get("allow_retry"),
        "stored_after": [item["type"] for item in items],
        "lost_acknowledged": 0 if items and items[0]["type"] == "user_message" else 1,
    }


async def disconnects(bench: Bench) -> dict[str, Any]:
    url = bench.serve(tokens=200, delay_ms=10)
    headers = bearer("disconnect")
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        payload = {"type": "threads.create", "params": {"input": user_input("long answer")}}
        thread_id = ""
        async with client.stream("POST", "/chatkit", json=payload, headers=headers) as response:
            async for line in response.aiter_lines():
                if '"thread.created"' in line:
                    thread_id = line.split('"id":"', 1)[1].split('"', 1)[0]
                if "assistant_message.content_part.text_delta" in line:
                    break  # hang up mid-answer
        # The answer finishes in the background (ON_DISCONNECT=finish): the thread takes the next
        # message once it is active again.
        await wait_until_active(client, headers, [thread_id])
        items = await stored_items(client, headers, thread_id)
        follow_up, _ = await stream_turn(
            client,
            "/chatkit",
            headers,
            {
                "type": "threads.add_user_message",
                "params": {"thread_id": thread_id, "input": user_input("still there?")},
            },
        )
    return {
        "stored_after_disconnect": [item["type"] for item in items],
        "follow_up_ok": follow_up.error is None,
    }


async def wait_until_active(
    client: httpx.AsyncClient, headers: dict[str, str], thread_ids: list[str]
) -> None:
    """Poll `threads.get_by_id` until no thread is locked (two minutes at most)."""
    deadline = time.perf_counter() + 120
    waiting = set(thread_ids)
    while waiting and time.perf_counter() < deadline:
        for thread_id in list(waiting):
            payload = {"type": "threads.get_by_id", "params": {"thread_id": thread_id}}
            thread = (await client.post("/chatkit", json=payload, headers=headers)).json()
            if thread["status"]["type"] == "active":
                waiting.discard(thread_id)
        await asyncio.sleep(0.2)


async def disconnects_50(bench: Bench) -> dict[str, Any]:
    """50 users hang up mid-answer at once: every answer must end complete, with no lock left."""
    tokens, users = 200, 50
    url = bench.serve(tokens=tokens, delay_ms=10)
    limits = httpx.Limits(max_connections=users + 10, max_keepalive_connections=users + 10)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def hang_up(n: int) -> tuple[dict[str, str], str]:
            headers = bearer(f"leaver-{n}")
            payload = {"type": "threads.create", "params": {"input": user_input("long answer")}}
            thread_id = ""
            async with client.stream("POST", "/chatkit", json=payload, headers=headers) as response:
                async for line in response.aiter_lines():
                    if '"thread.created"' in line:
                        thread_id = line.split('"id":"', 1)[1].split('"', 1)[0]
                    if "assistant_message.content_part.text_delta" in line:
                        break  # hang up mid-answer
            return headers, thread_id

        left = await asyncio.gather(*(hang_up(n) for n in range(users)))
        started = time.perf_counter()
        for headers, thread_id in left:
            await wait_until_active(client, headers, [thread_id])
        waited = time.perf_counter() - started
        complete = 0
        for headers, thread_id in left:
            items = await stored_items(client, headers, thread_id)
            texts = [
                "".join(part["text"] for part in item["content"])
                for item in items
                if item["type"] == "assistant_message"
            ]
            words = texts[-1].split() if len(texts) == 1 else []
            complete += len(words) == tokens and words[-1] == f"word{tokens - 1}"
    connection = await asyncpg.connect(bench.db.replace("postgresql+asyncpg", "postgresql"))
    try:
        stale = await connection.fetchval("SELECT count(*) FROM turn_locks")
    finally:
        await connection.close()
    return {
        "users": users,
        "answers_complete_in_db": complete,
        "stale_locks": stale,
        "seconds_from_hang_up_to_all_active": round(waited, 2),
    }


async def concurrent_writers(bench: Bench) -> dict[str, Any]:
    url = bench.serve(tokens=20, delay_ms=5)
    load = await run_load(url, 50, 4, lambda n: bearer(f"writer-{n}"))
    headers = bearer("racer")
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        _, thread_id = await new_thread(client, headers, "race")
        racers = [
            stream_turn(
                client,
                "/chatkit",
                headers,
                {
                    "type": "threads.add_user_message",
                    "params": {"thread_id": thread_id, "input": user_input(f"racer {n}")},
                },
            )
            for n in range(2)
            for _ in range(5)
        ]
        raced = await asyncio.gather(*racers)
    stored = (await stored_counts(bench.db, [thread_id])).get(thread_id, {})
    acknowledged = 1 + sum(
        1
        for turn, evts in raced
        for e in evts
        if e["type"] == "thread.item.done" and e["item"]["type"] == "assistant_message"
    )
    return {
        "users_50_turns": len(load.turns),
        "users_50_errors": len(load.errors),
        "users_50_lost": await lost(bench.db, load),
        # One turn per thread: a message sent while another is answered is refused (409).
        "racing_refused_409": sum(1 for turn, _ in raced if (turn.error or "")[:8] == "HTTP 409"),
        "racing_turns_failed": sum(
            1 for turn, _ in raced if turn.error and not turn.error.startswith("HTTP 409")
        ),
        "racing_lost": max(0, acknowledged - stored.get("assistant_message", 0)),
        "racing_user_messages_stored": stored.get("user_message", 0),
    }


SCENARIOS: dict[str, Callable[[Bench], Awaitable[dict[str, Any]]]] = {
    "model-500": lambda bench: model_failure(bench, "500"),
    "model-429": lambda bench: model_failure(bench, "429"),
    "model-drop": lambda bench: model_failure(bench, "drop"),
    "disconnect": disconnects,
    "disconnect-50": disconnects_50,
    "concurrent-writers": concurrent_writers,
    "postgres-restart": postgres_restart,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(SCENARIOS), default=list(SCENARIOS))
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(Bench(), args.only))


async def run(bench: Bench, scenarios: list[str]) -> None:
    try:
        for name in scenarios:
            started = time.perf_counter()
            outcome = await SCENARIOS[name](bench)
            print(f"{name} ({time.perf_counter() - started:.1f} s): {outcome}")
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
