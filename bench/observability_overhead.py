"""What metrics and traces cost: turns per second with both on, against both off, alternating.

    uv run python -m bench.observability_overhead              # 50 users x 4 messages, 3 pairs
    uv run python -m bench.observability_overhead --pairs 5 --users 50
    uv run python -m bench.observability_overhead --pairs 6 --sample 0.1   # one trace in ten
    uv run python -m bench.observability_overhead --parts traces            # traces alone

Two copies of the real server (as `bench.run` starts it: production settings, PostgreSQL, a JWT
per request, the rate limiter) stream from the same local model endpoint, on a PostgreSQL
server of the benchmark's own when `initdb` is installed:
- "off": no METRICS_ENABLED, no OTEL_* variable (the default);
- "on": METRICS_ENABLED with its token, `/metrics` scraped every few seconds during the load,
  and OTEL_EXPORTER_OTLP_ENDPOINT pointing at a sink on loopback that takes every OTLP/HTTP
  export (HTTP, SQL, httpx and agent spans, all sampled).
The runs alternate (off, on, off, on, ...) so that both see the same drift in the machine's load;
the figure is the ratio of the medians, with the median of the pairs' ratios and every pair's
ratio beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from bench.load import run_load
from bench.processes import start, start_model_endpoint
from bench.run import RESULTS, Target, server_env, token_headers, warm_up
from tests.helpers.database import fresh_postgres_database, migrate
from tests.helpers.postgres_cluster import PostgresCluster, postgres_bin_dir
from tests.helpers.server import LOOPBACK, ServerProcess, free_port

METRICS_TOKEN = "bench-metrics-token-0123456789"
SCRAPE_SECONDS = 5.0


class Sink(BaseHTTPRequestHandler):
    """Takes OTLP/HTTP exports and counts their bytes (a collector's cost is not ours)."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.exported += len(body)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def start_sink() -> ThreadingHTTPServer:
    sink = ThreadingHTTPServer((LOOPBACK, 0), Sink)
    sink.exported = 0  # type: ignore[attr-defined]
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    return sink


def start_server(name: str, env: dict[str, str], port: int) -> ServerProcess:
    args = ["-m", "uvicorn", "app.main:app", "--host", LOOPBACK, "--port", str(port)]
    return start([*args, "--no-access-log"], env, port, RESULTS / f"observability-{name}.log")


async def scrape_while(server: ServerProcess, stop: asyncio.Event) -> int:
    """GET /metrics every SCRAPE_SECONDS until `stop`, as Prometheus would; the scrapes done."""
    scrapes = 0
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        while not stop.is_set():
            response = await client.get("/metrics", headers=headers)
            response.raise_for_status()
            scrapes += 1
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SCRAPE_SECONDS)
    return scrapes


async def one_run(
    server: ServerProcess, users: int, messages: int, scrape: bool
) -> tuple[float, float]:
    """Turns per second, and the server's CPU milliseconds per turn."""
    cpu_before = server.cpu_seconds()
    stop = asyncio.Event()
    scraper = asyncio.create_task(scrape_while(server, stop)) if scrape else None
    result = await run_load(server.base_url, users, messages, token_headers)
    stop.set()
    if scraper is not None:
        await scraper
    if result.errors:
        raise SystemExit(f"errors: {sorted(set(result.errors))[:3]}")
    cpu_ms = 1000 * (server.cpu_seconds() - cpu_before) / max(1, len(result.ok))
    return float(result.summary()["turns_per_s"]), cpu_ms


async def run(args: argparse.Namespace, db: str) -> dict[str, Any]:
    model = start_model_endpoint(RESULTS / "model.log", args.tokens, args.delay_ms)
    sink = start_sink()
    model_url = f"{model.base_url}/v1"
    off_port, on_port = free_port(), free_port()
    on_env: dict[str, str] = {}
    if "metrics" in args.parts:
        on_env |= {"METRICS_ENABLED": "true", "METRICS_TOKEN": METRICS_TOKEN}
    if "traces" in args.parts:
        on_env |= {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{LOOPBACK}:{sink.server_address[1]}",
            "OTEL_SERVICE_NAME": "chatkit-bench",
        }
    if args.sample < 1:
        on_env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        on_env["OTEL_TRACES_SAMPLER_ARG"] = str(args.sample)
    # As bench.run's pools: 10 + 10 opened and closed overflow connections all the time, which
    # costs whichever server holds its connections longer most.
    pools = {"DATABASE_POOL_SIZE": "20", "DATABASE_MAX_OVERFLOW": "0"}
    servers: list[ServerProcess] = [model]
    try:
        off = start_server("off", {**server_env(db, model_url, off_port), **pools}, off_port)
        servers.append(off)
        on_env = {**server_env(db, model_url, on_port), **pools, **on_env}
        on = start_server("on", on_env, on_port)
        servers.append(on)
        await warm_up(Target("off", [off]))
        await warm_up(Target("on", [on]))
        figures: dict[str, list[float]] = {"off": [], "on": []}
        cpu: dict[str, list[float]] = {"off": [], "on": []}
        for pair in range(args.pairs):
            order = [("off", off), ("on", on)]
            for name, server in order if pair % 2 == 0 else order[::-1]:  # neither always first
                scrape = name == "on" and "metrics" in args.parts
                turns, cpu_ms = await one_run(server, args.users, args.messages, scrape)
                figures[name].append(turns)
                cpu[name].append(cpu_ms)
                print(f"pair {pair + 1} {name:3}: {turns:6.1f} turns/s, {cpu_ms:5.1f} ms CPU/turn")
        exported = sink.exported  # type: ignore[attr-defined]
    finally:
        for process in reversed(servers):
            process.stop()
        sink.shutdown()
    medians = {name: statistics.median(values) for name, values in figures.items()}
    ratios = [on / off for off, on in zip(figures["off"], figures["on"], strict=True)]
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    return {
        "args": {**vars(args), "parts": sorted(args.parts)},
        "turns_per_s": figures,
        "cpu_ms_per_turn": cpu,
        "cpu_median": cpu_medians,
        "cpu_ratio_of_medians": cpu_medians["on"] / cpu_medians["off"],
        "median": medians,
        "ratio_of_medians": medians["on"] / medians["off"],
        "pair_ratios": ratios,
        "median_pair_ratio": statistics.median(ratios),
        "otlp_bytes_exported": exported,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--messages", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=3, help="off/on runs, alternating")
    parser.add_argument(
        "--sample",
        type=float,
        default=1.0,
        help="the share of traces sampled when on (OTEL_TRACES_SAMPLER_ARG; 1: every trace)",
    )
    parser.add_argument(
        "--parts",
        type=lambda value: set(value.split(",")),
        default={"metrics", "traces"},
        help="what 'on' turns on: metrics, traces, or metrics,traces (the default)",
    )
    parser.add_argument("--tokens", type=int, default=40, help="words per model answer")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="pause between words")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    bin_dir = postgres_bin_dir()
    cluster = PostgresCluster(bin_dir).init() if bin_dir else None
    try:
        if cluster is not None:  # its own: the shared server's connections run out under tests
            cluster.start()
            db = cluster.create_database("chatkit_bench_observability")
        else:
            db = fresh_postgres_database("chatkit_bench_observability")
        migrate(db)
        figures = asyncio.run(run(args, db))
    finally:
        if cluster is not None:
            cluster.destroy()
    print(
        f"median turns/s: off {figures['median']['off']:.1f}, on {figures['median']['on']:.1f}; "
        f"on/off {figures['ratio_of_medians']:.3f} (median of the pairs' "
        f"{figures['median_pair_ratio']:.3f}); per pair "
        + ", ".join(f"{ratio:.2f}" for ratio in figures["pair_ratios"])
        + f"; CPU ms/turn: off {figures['cpu_median']['off']:.1f}, "
        f"on {figures['cpu_median']['on']:.1f} ({figures['cpu_ratio_of_medians']:.3f})"
        + f"; {figures['otlp_bytes_exported']} bytes of spans exported"
    )
    (RESULTS / "observability.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
