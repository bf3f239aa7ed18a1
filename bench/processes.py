"""The processes a benchmark run needs, all on loopback, started by the tests' own helper."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.helpers.server import ServerProcess, free_port, start_server

ROOT = Path(__file__).resolve().parents[1]


def start(
    args: list[str],
    env: dict[str, str],
    port: int,
    log: Path,
    ready_path: str = "/healthz",
    cwd: Path | None = None,
) -> ServerProcess:
    """`python args...` in `cwd` (another checkout's `app`, say; default this checkout) with
    this environment plus `env`, once `ready_path` answers 200."""
    return start_server(
        [sys.executable, *args],
        port=port,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        cwd=cwd or ROOT,
        log_path=log,
        ready_path=ready_path,
        startup_timeout=180,  # a loaded machine starts slowly
    )


def start_model_endpoint(log: Path, tokens: int, delay_ms: float, *flags: str) -> ServerProcess:
    """`bench.model_endpoint`: an OpenAI-compatible server answering `tokens` words."""
    port = free_port()
    args = ["-m", "bench.model_endpoint", "--port", str(port), "--tokens", str(tokens)]
    return start([*args, "--delay-ms", str(delay_ms), *flags], {}, port, log, "/health")


def tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU of `pid` and its live descendants (uvicorn's workers are children of
    its supervisor), from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        times[child] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    tree: set[int] = {pid}
    while True:
        grown = tree | {child for child, parent in parents.items() if parent in tree}
        if grown == tree:
            return sum(times.get(member, 0.0) for member in tree)
        tree = grown
