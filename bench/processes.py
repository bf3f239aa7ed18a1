"""Start and measure the processes a benchmark run needs, all on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    """A child process serving HTTP on `url`."""

    popen: subprocess.Popen[bytes]
    url: str
    log: Path

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start(
    args: list[str], env: dict[str, str], port: int, log: Path, ready_path: str = "/healthz"
) -> Process:
    """Start `python args...` with `env` added, and wait until `ready_path` answers 200."""
    handle = log.open("wb")
    popen = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{args} exited with {popen.returncode}; see {log}")
        try:
            if httpx.get(url + ready_path, timeout=1).status_code == 200:
                return Process(popen, url, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    popen.kill()
    raise RuntimeError(f"{args} did not become ready; see {log}")
