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
    cwd: Path = ROOT,
) -> ServerProcess:
    """`python args...` in `cwd` (another checkout's `app`, say) with this environment plus
    `env`, once `ready_path` answers 200."""
    return start_server(
        [sys.executable, *args],
        port=port,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        cwd=cwd,
        log_path=log,
        ready_path=ready_path,
        startup_timeout=60,
    )


def start_model_endpoint(log: Path, tokens: int, delay_ms: float, *flags: str) -> ServerProcess:
    """`bench.model_endpoint`: an OpenAI-compatible server answering `tokens` words."""
    port = free_port()
    args = ["-m", "bench.model_endpoint", "--port", str(port), "--tokens", str(tokens)]
    return start([*args, "--delay-ms", str(delay_ms), *flags], {}, port, log, "/health")
