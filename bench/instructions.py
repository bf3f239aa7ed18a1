"""Instructions per turn under callgrind: a CPU figure that the machine's load cannot move.

    uv run python -m bench.instructions                        # every variant, 10 users x 2
    uv run python -m bench.instructions --variants server,reference --users 50
    uv run python -m bench.instructions --variants server,unsampled,sampled --sample 0.1

Needs valgrind (`callgrind_control` comes with it; Debian: `apt-get install valgrind`).

On this project's noisy 2-core machines, seconds of CPU per turn swing by a third between runs
of the same code; valgrind's callgrind counts the instructions a process executes, which do not
depend on what else the machine runs. Each variant is one server process started under
`valgrind --tool=callgrind` with counting off; after a warm-up load (not counted), counting is
turned on for one load of `--users` x `--messages` turns (`callgrind_control`), and the
instructions of every thread of the process are added up.

What it does not count: the kernel's work for the process (system calls), cache misses, and
anything in other processes (PostgreSQL, the model endpoint). A process under valgrind runs
some 50 times slower, so timing-dependent work differs from a real run (the SSE writes batch
more events, say): read its ratios beside `bench.run`'s and `bench.ab`'s, not instead of them.

Variants (all on the same model endpoint and database):
- `reference`: `bench.reference_server`, the SDK docs' minimal server;
- `server`: the real server as `bench.run` starts it (production settings, a JWT per request,
  the rate limiter, every turn in PostgreSQL), metrics and traces off;
- `metrics`: the same with `METRICS_ENABLED`;
- `unsampled`: metrics and traces on, no request sampled (`parentbased_traceidratio`, 0);
- `sampled`: metrics and traces on, every request sampled.
With both `unsampled` and `sampled`, the cost of sampling `--sample` of the requests is worked
out from them, without the luck of a random sample.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.load import run_load
from bench.observability_overhead import METRICS_TOKEN, start_sink
from bench.processes import ROOT, start_model_endpoint
from bench.run import RESULTS, server_env, token_headers
from tests.helpers.database import fresh_postgres_database, migrate
from tests.helpers.server import LOOPBACK, ServerProcess, free_port, start_server

VARIANTS = ("reference", "server", "metrics", "unsampled", "sampled")
OUTPUT = RESULTS / "callgrind"


def variant_command(
    name: str, database: str, model_url: str, sink_url: str, port: int
) -> tuple[list[str], dict[str, str]]:
    """The Python arguments and environment of one variant's server."""
    if name == "reference":
        env = {
            "OPENAI_BASE_URL": model_url,
            "OPENAI_API_KEY": "bench",
            "MODEL_API": "responses",
            "CHATKIT_MODEL": "bench-model",
            "PORT": str(port),
        }
        return ["-m", "bench.reference_server"], env
    env = server_env(database, model_url, port)
    if name != "server":
        env |= {"METRICS_ENABLED": "true", "METRICS_TOKEN": METRICS_TOKEN}
    if name in ("unsampled", "sampled"):
        env |= {
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url,
            "OTEL_SERVICE_NAME": "chatkit-bench",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "1" if name == "sampled" else "0",
        }
    uvicorn = ["-m", "uvicorn", "app.main:app", "--host", LOOPBACK, "--port", str(port)]
    return [*uvicorn, "--no-access-log"], env


def callgrind(pid: int, *flags: str) -> None:
    subprocess.run(["callgrind_control", *flags, str(pid)], check=True, capture_output=True)


def counted(name: str, pid: int) -> int:
    """Instructions in the dump `callgrind_control --dump` wrote: one file per thread."""
    total = 0
    for path in OUTPUT.glob(f"{name}.{pid}.1*"):
        for line in path.read_text().splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
                break
    return total


async def measure(
    name: str, args: argparse.Namespace, database: str, model_url: str, sink_url: str
) -> dict[str, Any]:
    port = free_port()
    python_args, env = variant_command(name, database, model_url, sink_url, port)
    valgrind = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--separate-threads=yes",
        f"--callgrind-out-file={OUTPUT}/{name}.%p",
        sys.executable,
    ]
    headers = (lambda n: {}) if name == "reference" else token_headers
    server: ServerProcess = start_server(
        [*valgrind, *python_args],
        port=port,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        cwd=ROOT,
        log_path=OUTPUT / f"{name}.log",
        startup_timeout=600,  # imports under valgrind
    )
    try:
        await run_load(server.base_url, args.warm_up, 2, headers)
        pid = server.process.pid
        callgrind(pid, "--instr=on")
        started = time.perf_counter()
        result = await run_load(server.base_url, args.users, args.messages, headers)
        callgrind(pid, "--dump")
        callgrind(pid, "--instr=off")
        if result.errors:
            raise SystemExit(f"{name}: errors: {sorted(set(result.errors))[:3]}")
    finally:
        server.stop()
    turns = len(result.ok)
    per_turn = counted(name, pid) / turns
    print(
        f"{name:10} {per_turn / 1e6:8.2f} M instructions per turn "
        f"({turns} turns, {time.perf_counter() - started:.0f} s under callgrind)",
        flush=True,
    )
    return {"turns": turns, "instructions_per_turn": per_turn}


async def run(args: argparse.Namespace, database: str) -> dict[str, Any]:
    model = start_model_endpoint(RESULTS / "model.log", args.tokens, args.delay_ms)
    sink = start_sink()
    sink_url = f"http://{LOOPBACK}:{sink.server_address[1]}"
    try:
        figures = {
            name: await measure(name, args, database, f"{model.base_url}/v1", sink_url)
            for name in args.variants
        }
    finally:
        model.stop()
        sink.shutdown()
    per_turn = {name: value["instructions_per_turn"] for name, value in figures.items()}
    ratios: dict[str, float] = {}
    if "server" in per_turn:
        base = per_turn["server"]
        ratios = {
            f"{name}/server": value / base
            for name, value in per_turn.items()
            if name not in ("server", "reference")
        }
        if "unsampled" in per_turn and "sampled" in per_turn:
            mixed = (1 - args.sample) * per_turn["unsampled"] + args.sample * per_turn["sampled"]
            ratios[f"metrics and {args.sample:g} of traces/server"] = mixed / base
    if "reference" in per_turn and "server" in per_turn:
        ratios["server/reference"] = per_turn["server"] / per_turn["reference"]
    return {"args": vars(args), "variants": figures, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--variants",
        type=lambda value: value.split(","),
        default=list(VARIANTS),
        help=f"comma-separated, measured in this order: {', '.join(VARIANTS)}",
    )
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--messages", type=int, default=2)
    parser.add_argument("--warm-up", type=int, default=20, help="users of the uncounted load")
    parser.add_argument("--sample", type=float, default=0.1, help="the share of traces sampled")
    parser.add_argument("--tokens", type=int, default=40, help="words per model answer")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="pause between words")
    args = parser.parse_args()
    if unknown := set(args.variants) - set(VARIANTS):
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    database = fresh_postgres_database("chatkit_bench_instructions")
    migrate(database)
    figures = asyncio.run(run(args, database))
    for name, ratio in figures["ratios"].items():
        print(f"{name:40} {ratio:.3f}")
    (RESULTS / "instructions.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
