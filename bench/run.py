"""The benchmark: the real server against the docs' minimal in-memory server, same load, one run.

    uv run python -m bench.run                 # 50 users x 4 messages, then scaling figures
    uv run python -m bench.run --users 200     # the zero-error target
    uv run python -m bench.run --model-api chat_completions   # both servers on Chat Completions

Both servers stream from the same local OpenAI-compatible endpoint (bench/model_endpoint.py),
over the Responses API or Chat Completions (`--model-api`).
The real server runs on PostgreSQL with JWT authentication on every request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import time
from typing import Any

import asyncpg
import httpx
import jwt
from sqlalchemy.engine import make_url

from bench.load import LoadResult, run_load
from bench.processes import ROOT, start, start_model_endpoint
from bench.scaling import scaling_figures
from bench.verify import lost
from tests.helpers.database import fresh_postgres_database, migrate
from tests.helpers.server import ServerProcess, free_port

JWT_SECRET = "bench-secret-that-is-long-enough-for-hs256"
RESULTS = ROOT / "bench" / "results"


def bearer(sub: str) -> dict[str, str]:
    """Headers with a fresh HS256 token for `sub`, as an app minting its own tokens sends."""
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + 3600}
    return {"Authorization": f"Bearer {jwt.encode(claims, JWT_SECRET, algorithm='HS256')}"}


def token_headers(n: int) -> dict[str, str]:
    return bearer(f"bench-user-{n}")


def server_env(
    database_url: str, model_url: str, port: int, model_api: str = "responses"
) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "production",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "MODEL_PROVIDER": "openai",
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": model_url,
        "MODEL_API": model_api,
        "CHATKIT_MODEL": "bench-model",
        "AUTH_JWT_SECRET": JWT_SECRET,
        "CORS_ALLOW_ORIGINS": "http://localhost:3000",
        "ATTACHMENT_SIGNING_SECRET": "bench-attachment-signing-secret-0123456789",
        # The limiter still runs on every request (its cost is measured), with limits the load
        # cannot reach.
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "1000000",
        "RATE_LIMIT_DAILY_MESSAGES": "*=1000000",
        "MAX_CONCURRENT_STREAMS_PER_USER": "100",
    }


async def transactions(database_url: str) -> int:
    """Committed plus rolled-back transactions on the benchmark database so far."""
    url = make_url(database_url)
    conn = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database="postgres"
    )
    try:
        value = await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
            url.database,
        )
    finally:
        await conn.close()
    return int(value)


async def warm_up(server: ServerProcess, auth: bool) -> None:
    """Both servers pay one-time costs (lazy imports, pydantic schemas of the OpenAI types,
    database connections) that must not land in the figures."""
    await run_load(server.base_url, 10, 2, lambda n: bearer(f"warm-up-{n}") if auth else {})


async def measure(
    name: str, server: ServerProcess, users: int, messages: int, auth: bool, db: str | None
) -> dict[str, Any]:
    headers = token_headers if auth else (lambda n: {})
    cpu_before = server.cpu_seconds()
    xact_before = await transactions(db) if db else 0
    result: LoadResult = await run_load(server.base_url, users, messages, headers)
    cpu = server.cpu_seconds() - cpu_before
    figures: dict[str, Any] = {"server": name, **result.summary()}
    figures["cpu_ms_per_turn"] = 1000 * cpu / max(1, len(result.ok))
    if db:
        await asyncio.sleep(11)  # PostgreSQL flushes backend statistics within 10 s of idling
        figures["db_xacts_per_turn"] = (await transactions(db) - xact_before) / max(
            1, len(result.ok)
        )
        figures["lost_acknowledged"] = await lost(db, result)
    figures["first_errors"] = sorted(set(result.errors))[:3]
    return figures


def profile(py_spy: str, server: ServerProcess) -> subprocess.Popen[bytes]:
    """Sample the server's stacks (collapsed format, one stack a line) until interrupted."""
    output = RESULTS / "server-profile.txt"
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--format",
            "raw",
            "--rate",
            "200",
            "--output",
            str(output),
            "--pid",
            str(server.process.pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def print_table(rows: list[dict[str, Any]]) -> None:
    keys = [
        "turns",
        "errors",
        "turns_per_s",
        "events_per_s",
        "ttfe_p50_ms",
        "ttfe_p99_ms",
        "turn_p50_ms",
        "turn_p99_ms",
        "cpu_ms_per_turn",
        "db_xacts_per_turn",
        "lost_acknowledged",
    ]
    reference, ours = rows
    print(f"{'figure':<20}{'reference':>12}{'chatkit-backend':>17}{'ratio':>9}")
    for key in keys:
        ref, our = reference.get(key), ours.get(key)
        ratio = f"{our / ref:.2f}" if isinstance(ref, float | int) and ref and our else "-"
        print(f"{key:<20}{_fmt(ref):>12}{_fmt(our):>17}{ratio:>9}")
    for row in rows:
        if row["first_errors"]:
            print(f"errors from {row['server']}: {row['first_errors']}")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--messages", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=40, help="words per model answer")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="pause between words")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument(
        "--model-api",
        choices=["responses", "chat_completions"],
        default="responses",
        help="the API both servers speak to the model endpoint (MODEL_API)",
    )
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument(
        "--profile",
        metavar="PY_SPY",
        help="path to a py-spy binary: records the server during the load to results/",
    )
    args = parser.parse_args()

    RESULTS.mkdir(parents=True, exist_ok=True)
    db = fresh_postgres_database("chatkit_bench")
    migrate(db)
    asyncio.run(run(args, db))


async def run(args: argparse.Namespace, db: str) -> None:
    ref_port, our_port = free_port(), free_port()
    model = start_model_endpoint(RESULTS / "model.log", args.tokens, args.delay_ms)
    model_url = f"{model.base_url}/v1"
    processes = [model]
    try:
        reference = start(
            ["-m", "bench.reference_server"],
            {
                "OPENAI_BASE_URL": model_url,
                "OPENAI_API_KEY": "bench",
                "MODEL_API": args.model_api,
                "CHATKIT_MODEL": "bench-model",
                "PORT": str(ref_port),
            },
            ref_port,
            RESULTS / "reference.log",
        )
        processes.append(reference)
        ours = start(
            [
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(our_port),
                "--workers",
                str(args.workers),
                "--no-access-log",
            ],
            server_env(db, model_url, our_port, args.model_api),
            our_port,
            RESULTS / "server.log",
        )
        processes.append(ours)

        print(
            f"load: {args.users} users x {args.messages} messages, "
            f"{args.tokens} words per answer, {args.delay_ms} ms between words, "
            f"MODEL_API={args.model_api}"
        )
        await warm_up(reference, auth=False)
        await warm_up(ours, auth=True)
        ref_figures = await measure("reference", reference, args.users, args.messages, False, None)
        spy = profile(args.profile, ours) if args.profile else None
        our_figures = await measure("chatkit-backend", ours, args.users, args.messages, True, db)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait()
        print_table([ref_figures, our_figures])
        async with httpx.AsyncClient() as client:
            model_requests = (await client.get(f"{model.base_url}/requests")).json()
        print(f"model endpoint requests by path: {model_requests}")
        scaling: dict[str, Any] = {}
        if not args.skip_scaling:
            scaling = await scaling_figures(ours.base_url, db, bearer)
        (RESULTS / "latest.json").write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "load": [ref_figures, our_figures],
                    "model_requests": model_requests,
                    "scaling": scaling,
                },
                indent=2,
            )
        )
    finally:
        for process in reversed(processes):
            process.stop()


if __name__ == "__main__":
    main()
