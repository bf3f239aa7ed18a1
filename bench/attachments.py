"""What an attachment costs the turns after it: request bytes to the model and time to first event
in a thread whose first message carried a large image, against a thread without one.

    uv run python -m bench.attachments                         # this checkout, Files API and inline
    uv run python -m bench.attachments --before /work/main     # also an older checkout, alternated

Each server is `uvicorn app.main:app` from its checkout, on one fresh PostgreSQL database, against
the local model endpoint (`bench/model_endpoint.py`: Responses API, Files API stand-in, answers of
`--tokens` words without delay), which reports every model request's size. Per round and server,
one thread opens with a `--image-mb` MB image and one without, then each gets `--turns` plain
messages; servers and threads alternate, `--rounds` rounds, so the load of a shared machine falls
on all alike. Figures are medians with the 10th-90th percentile spread over the later turns.

Time to first event is taken twice: to the first SSE event (the saved user message), and to the
first event of the answer (`thread.item.added` of the assistant message), which comes after the
history, its attachments and the model request.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from bench.processes import ROOT, start, start_model_endpoint
from tests.helpers.database import fresh_postgres_database, migrate
from tests.helpers.server import ServerProcess, free_port

RESULTS = ROOT / "bench" / "results"


@dataclass
class Server:
    name: str
    checkout: Path
    env: dict[str, str]
    process: ServerProcess | None = None


@dataclass
class Figures:
    """One (server, thread kind)'s samples."""

    first_turn_ms: list[float] = field(default_factory=list)
    first_event_ms: list[float] = field(default_factory=list)
    first_answer_ms: list[float] = field(default_factory=list)
    request_bytes: list[int] = field(default_factory=list)


def noise_png(megabytes: float) -> bytes:
    """A PNG of random pixels, about `megabytes` MB (noise does not compress)."""
    side = int((megabytes * 1_000_000 / 3) ** 0.5)
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def server_env(database_url: str, model_url: str, port: int) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "DATABASE_POOL_SIZE": "3",  # one user at a time; the PostgreSQL server is shared
        "DATABASE_MAX_OVERFLOW": "2",
        "ENVIRONMENT": "development",
        "AUTH_TRUST_USER_HEADERS": "true",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "MODEL_PROVIDER": "openai",
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": model_url,
        "OPENAI_MAX_RETRIES": "0",
        "CHATKIT_MODEL": "bench-model",
        "ATTACHMENT_MAX_BYTES": str(64 * 1024 * 1024),
        "ATTACHMENT_ALLOWED_MIME_TYPES": "*/*",
        "ATTACHMENT_SIGNING_SECRET": "bench-attachment-signing-secret-0123456789",
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "0",
        "RATE_LIMIT_DAILY_MESSAGES": "*=unlimited",
        "MAX_CONCURRENT_STREAMS_PER_USER": "0",
        "CHATKIT_MAX_BODY_BYTES": str(64 * 1024 * 1024),
    }


def message(text: str, attachments: list[str]) -> dict[str, Any]:
    return {
        "content": [{"type": "input_text", "text": text}],
        "attachments": attachments,
        "inference_options": {},
    }


async def timed_turn(
    client: httpx.AsyncClient, user: str, payload: dict[str, Any]
) -> tuple[float, float, str | None]:
    """(ms to the first SSE event, ms to the answer's first event, the thread id)."""
    started = time.perf_counter()
    first = answer = None
    thread_id = None
    headers = {"X-User-Id": user}
    async with client.stream("POST", "/chatkit", json=payload, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            now = time.perf_counter()
            first = first or now
            event = json.loads(line[6:])
            if event["type"] == "error":
                raise RuntimeError(f"error event: {event}")
            if event["type"] == "thread.created":
                thread_id = event["thread"]["id"]
            if (
                answer is None
                and event["type"] == "thread.item.added"
                and event["item"]["type"] == "assistant_message"
            ):
                answer = now
    assert first is not None and answer is not None
    return 1000 * (first - started), 1000 * (answer - started), thread_id


async def model_bytes(model: httpx.AsyncClient) -> list[int]:
    """The sizes of the streamed (answer) requests the model endpoint received so far."""
    received = (await model.get("/received")).json()
    return [r["size"] for r in received if r["stream"]]


async def one_thread(
    server: Server,
    model: httpx.AsyncClient,
    image: bytes | None,
    turns: int,
    figures: Figures,
    user: str,
) -> None:
    assert server.process is not None
    async with httpx.AsyncClient(base_url=server.process.base_url, timeout=120) as client:
        attachments = []
        if image is not None:
            response = await client.post(
                "/chatkit/attachments",
                files={"file": ("photo.png", image, "image/png")},
                headers={"X-User-Id": user},
            )
            assert response.status_code == 200, response.text
            attachments.append(response.json()["id"])
        create = {"type": "threads.create", "params": {"input": message("Look", attachments)}}
        _, answer_ms, thread_id = await timed_turn(client, user, create)
        figures.first_turn_ms.append(answer_ms)
        for n in range(turns):
            before = len(await model_bytes(model))
            payload = {
                "type": "threads.add_user_message",
                "params": {"thread_id": thread_id, "input": message(f"And {n}?", [])},
            }
            first_ms, answer_ms, _ = await timed_turn(client, user, payload)
            sizes = (await model_bytes(model))[before:]
            figures.first_event_ms.append(first_ms)
            figures.first_answer_ms.append(answer_ms)
            figures.request_bytes.append(sum(sizes))


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.1f}" if values else "-"
    deciles = statistics.quantiles(values, n=10)
    return f"{statistics.median(values):.1f} ({deciles[0]:.1f}-{deciles[-1]:.1f})"


def out(line: str) -> None:
    sys.stdout.write(line + "\n")


async def run(args: argparse.Namespace, db: str) -> None:
    image = noise_png(args.image_mb)
    out(f"image: {len(image) / 1e6:.1f} MB PNG; {args.rounds} rounds x {args.turns} later turns")
    RESULTS.mkdir(parents=True, exist_ok=True)
    endpoint = start_model_endpoint(RESULTS / "attachments-model.log", args.tokens, 0)
    servers = [
        Server("this checkout, Files API", ROOT, {"MODEL_FILES_API": "on"}),
        Server("this checkout, inline", ROOT, {"MODEL_FILES_API": "off"}),
    ]
    if args.before:
        servers.insert(0, Server(f"before ({args.before})", Path(args.before), {}))
    figures = {(s.name, kind): Figures() for s in servers for kind in ("with", "without")}
    try:
        for server in servers:
            port = free_port()
            env = {**server_env(db, f"{endpoint.base_url}/v1", port), **server.env}
            server.process = start(
                ["-m", "uvicorn", "app.main:app", "--port", str(port), "--no-access-log"],
                env,
                port,
                RESULTS / f"attachments-server-{port}.log",
                cwd=server.checkout,
            )
        async with httpx.AsyncClient(base_url=endpoint.base_url) as model:
            for server in servers:  # warm-up: imports, connections, schemas
                await one_thread(server, model, None, 2, Figures(), "warm-up")
            for round_number in range(args.rounds):
                for server in servers:
                    for kind in ("with", "without") if round_number % 2 else ("without", "with"):
                        user = f"bench-{round_number}-{kind}"
                        await one_thread(
                            server,
                            model,
                            image if kind == "with" else None,
                            args.turns,
                            figures[(server.name, kind)],
                            user,
                        )
                out(f"round {round_number + 1} done")
        report(servers, figures)
    finally:
        for server in servers:
            if server.process is not None:
                server.process.stop()
        endpoint.stop()


def report(servers: list[Server], figures: dict[tuple[str, str], Figures]) -> None:
    out("")
    out(
        f"{'server':<32} {'thread':<8} {'bytes/later turn':>17} {'1st turn answer ms':>20} "
        f"{'first event ms':>20} {'first answer ms':>22}"
    )
    for server in servers:
        for kind in ("without", "with"):
            f = figures[(server.name, kind)]
            out(
                f"{server.name:<32} {kind:<8} {statistics.median(f.request_bytes):>17,.0f} "
                f"{spread(f.first_turn_ms):>20} {spread(f.first_event_ms):>20} "
                f"{spread(f.first_answer_ms):>22}"
            )
        with_, without = figures[(server.name, "with")], figures[(server.name, "without")]
        gap = statistics.median(with_.first_answer_ms) - statistics.median(without.first_answer_ms)
        out(f"{'':<32} answer's first event, with minus without: {gap:+.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--turns", type=int, default=6, help="later turns per thread")
    parser.add_argument("--image-mb", type=float, default=15.0)
    parser.add_argument("--tokens", type=int, default=5, help="words per model answer")
    parser.add_argument("--before", metavar="CHECKOUT", help="another checkout to compare")
    db = fresh_postgres_database("chatkit_bench_attachments")
    migrate(db)
    asyncio.run(run(parser.parse_args(), db))


if __name__ == "__main__":
    main()
