"""The benchmark: the real server against the docs' minimal in-memory server, same load.

    uv run python -m bench.run --repeat 5 --skip-scaling   # the figures of issue 16, ~5 minutes
    uv run python -m bench.run --users 200 --messages 3    # one round, bigger
    uv run python -m bench.run --model-api chat_completions   # both servers on Chat Completions

Both servers stream from the same local OpenAI-compatible endpoint (bench/model_endpoint.py),
over the Responses API or Chat Completions (`--model-api`). The real server runs on PostgreSQL
with JWT authentication on every request, as `scripts/serve.sh` starts it: one process, and
`WEB_CONCURRENCY=2` workers. Each figure is the median of `--repeat` rounds, the servers taking
turns within a round (and the order flipping every round), so one noisy moment cannot decide.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import jwt
from sqlalchemy.engine import make_url

from bench.load import LoadResult, run_load
from bench.processes import ROOT, start, start_model_endpoint, tree_cpu_seconds
from bench.scaling import scaling_figures
from bench.verify import lost
from tests.helpers.database import fresh_postgres_database, migrate
from tests.helpers.server import ServerProcess, free_port

JWT_SECRET = "bench-secret-that-is-long-enough-for-hs256"
RESULTS = ROOT / "bench" / "results"
REFERENCE, ONE, TWO, REPLICAS = "reference", "1 process", "2 workers", "2 replicas"


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
        "WEB_CONCURRENCY": "1",
        # Every statement holds a connection for one round trip. Four server processes of
        # 20 stay within PostgreSQL's default 100 connections; 10 + 5 ran out (30 s pool
        # timeouts, answered 503) at 200 users on a machine loaded 10 times over. No overflow:
        # an overflow connection is closed on its return, and at 50 users 15 + 5 opened one
        # for every seven turns or so (docs/deploy.md, "Pool or overflow").
        "DATABASE_POOL_SIZE": "20",
        "DATABASE_MAX_OVERFLOW": "0",
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


@dataclass
class Target:
    """What is measured: one or more server processes (replicas) and the database they use."""

    name: str
    servers: list[ServerProcess]
    database: str | None = None
    auth: bool = True

    @property
    def urls(self) -> list[str]:
        return [server.base_url for server in self.servers]

    def cpu_seconds(self) -> float:
        return sum(tree_cpu_seconds(server.process.pid) for server in self.servers)

    def headers(self, prefix: str) -> Callable[[int], dict[str, str]]:
        return (lambda n: bearer(f"{prefix}-{n}")) if self.auth else (lambda n: {})


async def warm_up(target: Target) -> None:
    """Every process pays one-time costs (lazy imports, pydantic schemas of the OpenAI types,
    database connections) that must not land in the figures; 20 users reach every worker."""
    await run_load(target.urls, 20, 2, target.headers("warm-up"))


async def measure(target: Target, users: int, messages: int, label: str) -> dict[str, Any]:
    """One load on `target`: its figures, server CPU per turn and answers lost."""
    cpu_before = target.cpu_seconds()
    result: LoadResult = await run_load(target.urls, users, messages, target.headers(label))
    cpu = target.cpu_seconds() - cpu_before
    figures: dict[str, Any] = {"server": target.name, **result.summary()}
    figures["cpu_ms_per_turn"] = 1000 * cpu / max(1, len(result.ok))
    if target.database:
        figures["lost_acknowledged"] = await lost(target.database, result)
    figures["first_errors"] = sorted(set(result.errors))[:3]
    return figures


def profile(py_spy: str, server: ServerProcess, name: str, round_: int) -> subprocess.Popen[bytes]:
    """Sample a server's stacks (collapsed format, one stack a line) until interrupted, without
    pausing it (`--nonblocking`: a paused server would be measured slower than it is)."""
    output = RESULTS / f"{name.replace(' ', '-')}-profile-{round_ + 1}.txt"
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--nonblocking",
            "--format",
            "raw",
            "--rate",
            "100",
            "--subprocesses",
            "--output",
            str(output),
            "--pid",
            str(server.process.pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# --- Summaries ------------------------------------------------------------------------------

FIGURES = [
    "turns_per_s",
    "cpu_ms_per_turn",
    "ttfe_p50_ms",
    "ttfe_p99_ms",
    "turn_p50_ms",
    "turn_p99_ms",
    "errors",
    "lost_acknowledged",
]


def spread(values: Sequence[float]) -> str:
    """`median (min–max)`, or the value alone for one run."""
    if not values:
        return "-"
    median = statistics.median(values)
    if len(values) == 1:
        return _fmt(median)
    return f"{_fmt(median)} ({_fmt(min(values))}–{_fmt(max(values))})"


def _fmt(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def column(rounds: list[dict[str, dict[str, Any]]], name: str, key: str) -> list[float]:
    return [r[name][key] for r in rounds if name in r and r[name].get(key) is not None]


def ratios(rounds: list[dict[str, dict[str, Any]]], name: str, key: str) -> list[float]:
    """Per round, ours over the reference's: both ran under the same load of the machine."""
    return [
        r[name][key] / r[REFERENCE][key]
        for r in rounds
        if name in r and REFERENCE in r and r[REFERENCE].get(key)
    ]


def differences(rounds: list[dict[str, dict[str, Any]]], name: str, key: str) -> list[float]:
    return [r[name][key] - r[REFERENCE][key] for r in rounds if name in r and REFERENCE in r]


def print_rounds(title: str, rounds: list[dict[str, dict[str, Any]]], names: list[str]) -> None:
    print(f"\n{title}: median (min–max) of {len(rounds)} round(s)")
    print(f"{'figure':<18}" + "".join(f"{name:>26}" for name in names))
    for key in FIGURES:
        cells = [spread(column(rounds, name, key)) for name in names]
        if any(cell != "-" for cell in cells):
            print(f"{key:<18}" + "".join(f"{cell:>26}" for cell in cells))
    for r in rounds:
        for name in names:
            if name in r and r[name]["first_errors"]:
                print(f"errors from {name}: {r[name]['first_errors']}")


@dataclass
class Check:
    figure: str
    values: list[float]
    target: str
    met: bool


def check_ratio(figure: str, values: list[float], limit: float, at_most: bool) -> Check:
    median = statistics.median(values) if values else float("nan")
    met = median <= limit if at_most else median >= limit
    return Check(figure, values, f"{'≤' if at_most else '≥'} {limit}x", met)


def targets(
    main: list[dict[str, dict[str, Any]]],
    small: list[dict[str, dict[str, Any]]],
    stress: dict[str, dict[str, Any]],
    users: int,
    small_users: int,
) -> list[Check]:
    """Issue 16's targets, each decided on the median of the per-round ratios."""
    checks = [
        check_ratio(
            f"CPU/turn, 1 process ({users} users)",
            ratios(main, ONE, "cpu_ms_per_turn"),
            1.0,
            at_most=True,
        ),
        check_ratio(
            f"turns/s, 1 process ({users} users)",
            ratios(main, ONE, "turns_per_s"),
            1.0,
            at_most=False,
        ),
        check_ratio(
            f"turns/s, 2 workers ({users} users)",
            ratios(main, TWO, "turns_per_s"),
            1.3,
            at_most=False,
        ),
        check_ratio(
            f"TTFE p50, 1 process ({users} users)",
            ratios(main, ONE, "ttfe_p50_ms"),
            1.2,
            at_most=True,
        ),
    ]
    if small:
        gaps = differences(small, ONE, "ttfe_p50_ms")
        median = statistics.median(gaps)
        checks.append(
            Check(f"TTFE p50 ({small_users} users), ms over ref", gaps, "≤ +10 ms", median <= 10)
        )
    for name, figures in stress.items():
        bad = figures["errors"] + figures.get("lost_acknowledged", 0)
        checks.append(
            Check(f"errors+lost, {name} ({figures['turns']} turns)", [bad], "= 0", bad == 0)
        )
    return checks


def print_targets(checks: list[Check]) -> None:
    print(
        f"\n{'target (per-round ratio to the reference)':<44}{'median (min–max)':>24}"
        f"{'target':>12}{'met':>6}"
    )
    for c in checks:
        print(f"{c.figure:<44}{spread(c.values):>24}{c.target:>12}{'yes' if c.met else 'NO':>6}")


# --- The run --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="rounds; figures are medians")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--messages", type=int, default=4)
    parser.add_argument(
        "--small-users", type=int, default=10, help="the light load for time to first event"
    )
    parser.add_argument(
        "--stress-users", type=int, default=200, help="the zero-error run (0: skip it)"
    )
    parser.add_argument("--stress-messages", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=40, help="words per model answer")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="pause between words")
    parser.add_argument(
        "--server-args",
        default="",
        help="extra uvicorn arguments for this server, e.g. '--loop asyncio --http h11'",
    )
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
        help="path to a py-spy binary: records the reference and the 1-process server in every "
        "round (bench/results/*-profile-N.txt; `python -m bench.profile_split` sums them)",
    )
    args = parser.parse_args()

    RESULTS.mkdir(parents=True, exist_ok=True)
    one_db = fresh_postgres_database("chatkit_bench")
    two_db = fresh_postgres_database("chatkit_bench")
    migrate(one_db)
    migrate(two_db)
    asyncio.run(run(args, one_db, two_db))


def serve(
    args: argparse.Namespace, db: str, model_url: str, log: str, workers: int = 1
) -> ServerProcess:
    """The real server as `scripts/serve.sh` starts it (`python -m app.serve`; uvicorn's
    defaults: uvloop, httptools), `workers` processes by `WEB_CONCURRENCY`."""
    port = free_port()
    env = {**server_env(db, model_url, port, args.model_api), "WEB_CONCURRENCY": str(workers)}
    command = ["-m", "app.serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    server = start([*command, *args.server_args.split()], env, port, RESULTS / log)
    server.wait_for_listeners(workers, timeout=180)  # /healthz answers from the first one up
    return server


async def run(args: argparse.Namespace, one_db: str, two_db: str) -> None:
    model = start_model_endpoint(RESULTS / "model.log", args.tokens, args.delay_ms)
    model_url = f"{model.base_url}/v1"
    processes = [model]
    try:
        ref_port = free_port()
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
        one = serve(args, one_db, model_url, "server.log")
        processes.append(one)
        two = serve(args, two_db, model_url, "server-2-workers.log", workers=2)
        processes.append(two)
        replica = serve(args, one_db, model_url, "server-replica.log")
        processes.append(replica)
        targets_ = {
            REFERENCE: Target(REFERENCE, [reference], auth=False),
            ONE: Target(ONE, [one], one_db),
            TWO: Target(TWO, [two], two_db),
        }
        replicas = Target(REPLICAS, [one, replica], one_db)

        print(
            f"load: {args.users} users x {args.messages} messages, {args.repeat} round(s); "
            f"{args.tokens} words per answer, {args.delay_ms} ms between words, "
            f"MODEL_API={args.model_api}; {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.1f} at the start"
        )
        for target in [*targets_.values(), replicas]:
            await warm_up(target)
        await asyncio.sleep(11)  # the warm-up's transactions reach pg_stat_database

        names = [REFERENCE, ONE, TWO]
        main_rounds: list[dict[str, dict[str, Any]]] = []
        xacts_before = await transactions(one_db)
        for n in range(args.repeat):
            figures: dict[str, dict[str, Any]] = {}
            spy = None
            for name in names if n % 2 == 0 else list(reversed(names)):
                if name in (ONE, REFERENCE) and args.profile:
                    spy = profile(args.profile, targets_[name].servers[0], name, n)
                figures[name] = await measure(targets_[name], args.users, args.messages, f"m{n}")
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait()
                    spy = None
            main_rounds.append(figures)
            print(
                f"round {n + 1}: turns/s "
                + ", ".join(f"{k} {v['turns_per_s']:.1f}" for k, v in figures.items())
            )
        await asyncio.sleep(11)  # PostgreSQL flushes backend statistics within 10 s of idling
        one_turns = sum(r[ONE]["turns"] - r[ONE]["errors"] for r in main_rounds)
        xacts_per_turn = (await transactions(one_db) - xacts_before) / max(1, one_turns)

        small_rounds: list[dict[str, dict[str, Any]]] = []
        if args.small_users:
            for n in range(args.repeat):
                figures = {}
                for name in [REFERENCE, ONE] if n % 2 == 0 else [ONE, REFERENCE]:
                    figures[name] = await measure(
                        targets_[name], args.small_users, args.messages, f"s{n}"
                    )
                small_rounds.append(figures)

        stress: dict[str, dict[str, Any]] = {}
        if args.stress_users:
            for target in [targets_[ONE], targets_[TWO], replicas]:
                stress[target.name] = await measure(
                    target, args.stress_users, args.stress_messages, "stress"
                )

        print_rounds(f"{args.users} users x {args.messages} messages", main_rounds, names)
        print(f"database transactions per turn (1 process): {xacts_per_turn:.1f}")
        if small_rounds:
            print_rounds(
                f"{args.small_users} users x {args.messages} messages",
                small_rounds,
                [REFERENCE, ONE],
            )
        if stress:
            print_rounds(
                f"{args.stress_users} users x {args.stress_messages} messages",
                [stress],
                list(stress),
            )
        checks = targets(main_rounds, small_rounds, stress, args.users, args.small_users)
        print_targets(checks)
        async with httpx.AsyncClient() as client:
            model_requests = (await client.get(f"{model.base_url}/requests")).json()
        print(f"model endpoint requests by path (all servers, warm-ups included): {model_requests}")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        scaling: dict[str, Any] = {}
        if not args.skip_scaling:
            scaling = await scaling_figures(one.base_url, one_db, bearer)
        (RESULTS / "latest.json").write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "rounds": main_rounds,
                    "small_rounds": small_rounds,
                    "stress": stress,
                    "db_xacts_per_turn": xacts_per_turn,
                    "targets": [vars(c) for c in checks],
                    "model_requests": model_requests,
                    "scaling": scaling,
                },
                indent=2,
                default=str,
            )
        )
    finally:
        for process in reversed(processes):
            process.stop()


if __name__ == "__main__":
    main()
