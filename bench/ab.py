"""Before and after one change: two variants of the real server, same load, alternating rounds.

    uv run python -m bench.ab --before /tmp/old-checkout            # code: an older tree vs this
    uv run python -m bench.ab --a-env AGENT_CONFIG=titles-off.toml  # settings: A differs from B
    uv run python -m bench.ab --a-args "--loop asyncio --http h11"  # uvicorn arguments
    uv run python -m bench.ab --a-uvicorn --a-args "--workers 2" --b-args "--workers 2"

Each variant starts as `python -m app.serve` does (`--workers N` is its option; the rest goes to
uvicorn); `--a-uvicorn` starts A as `uvicorn app.main:app` instead (uvicorn's own `--workers`,
or a checkout older than `app/serve.py`). With several workers keep uvloop on both sides: on
asyncio's loop a worker's `--fd` socket sends without `TCP_NODELAY` (uvicorn takes it for a Unix
socket).

A is "before", B is "after" (this checkout with its defaults, unless told otherwise). Both run
on one PostgreSQL database against one model endpoint; each round measures both, the order
flipping every round, and each figure is printed as the median (min–max) of the rounds, with the
median of the per-round ratios B/A: CPU per turn is the figure that load on the machine moves
least.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from pathlib import Path
from typing import Any

from bench.processes import start, start_model_endpoint
from bench.run import RESULTS, Target, measure, server_env, spread, warm_up
from tests.helpers.database import fresh_postgres_database, migrate
from tests.helpers.server import ServerProcess, free_port

FIGURES = ["turns_per_s", "cpu_ms_per_turn", "ttfe_p50_ms", "turn_p50_ms", "errors"]


def variant(
    name: str,
    cwd: Path | None,
    db: str,
    model_url: str,
    env: list[str],
    args: str,
    *,
    uvicorn: bool = False,
) -> ServerProcess:
    port = free_port()
    extra = dict(item.split("=", 1) for item in env)
    launcher = ["-m", "uvicorn", "app.main:app"] if uvicorn else ["-m", "app.serve"]
    command = [*launcher, "--host", "127.0.0.1", "--port", str(port)]
    process = start(
        [*command, "--no-access-log", *args.split()],
        {**server_env(db, model_url, port), **extra},
        port,
        RESULTS / f"ab-{name}.log",
        cwd=cwd,
    )
    return process


async def run(args: argparse.Namespace, db: str) -> None:
    model = start_model_endpoint(RESULTS / "model.log", args.tokens, args.delay_ms)
    processes = [model]
    try:
        model_url = f"{model.base_url}/v1"
        before = Path(args.before) if args.before else None
        a = variant("a", before, db, model_url, args.a_env, args.a_args, uvicorn=args.a_uvicorn)
        processes.append(a)
        b = variant("b", None, db, model_url, args.b_env, args.b_args)
        processes.append(b)
        targets = {"A": Target("A", [a], db), "B": Target("B", [b], db)}
        for target in targets.values():
            await warm_up(target)
        print(
            f"A: {before or 'this checkout'}{' (uvicorn)' if args.a_uvicorn else ''} "
            f"{args.a_env} {args.a_args!r}; "
            f"B: this checkout {args.b_env} {args.b_args!r}; {args.users} users x "
            f"{args.messages} messages, {args.repeat} rounds; load average "
            f"{os.getloadavg()[0]:.1f} at the start"
        )
        rounds: list[dict[str, dict[str, Any]]] = []
        for n in range(args.repeat):
            order = ["A", "B"] if n % 2 == 0 else ["B", "A"]
            figures = {
                name: await measure(targets[name], args.users, args.messages, f"ab{n}")
                for name in order
            }
            rounds.append(figures)
            print(
                f"round {n + 1}: "
                + "; ".join(
                    f"{k} {v['cpu_ms_per_turn']:.1f} ms CPU/turn, {v['turns_per_s']:.1f} turns/s"
                    for k, v in sorted(figures.items())
                )
            )
        print(f"\n{'figure':<18}{'A':>24}{'B':>24}{'B/A per round':>24}")
        for key in FIGURES:
            a_values = [r["A"][key] for r in rounds]
            b_values = [r["B"][key] for r in rounds]
            ratios = [b / a for a, b in zip(a_values, b_values, strict=True) if a]
            print(f"{key:<18}{spread(a_values):>24}{spread(b_values):>24}{spread(ratios):>24}")
        for r in rounds:
            for name, figures in r.items():
                if figures["first_errors"]:
                    print(f"errors from {name}: {figures['first_errors']}")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        if rounds:
            cpu = [r["B"]["cpu_ms_per_turn"] / r["A"]["cpu_ms_per_turn"] for r in rounds]
            print(f"CPU per turn, B/A: median {statistics.median(cpu):.3f}")
    finally:
        for process in reversed(processes):
            process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", help="a checkout of the code for A (default: this one)")
    parser.add_argument("--a-env", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--b-env", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--a-args", default="", help="extra app.serve/uvicorn arguments for A")
    parser.add_argument("--b-args", default="", help="extra app.serve/uvicorn arguments for B")
    parser.add_argument(
        "--a-uvicorn", action="store_true", help="start A with uvicorn, not python -m app.serve"
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--messages", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--delay-ms", type=float, default=5.0)
    args = parser.parse_args()
    if args.before:
        args.before = str(Path(args.before).resolve())
    RESULTS.mkdir(parents=True, exist_ok=True)
    db = fresh_postgres_database("chatkit_bench")
    migrate(db)
    asyncio.run(run(args, db))


if __name__ == "__main__":
    main()
