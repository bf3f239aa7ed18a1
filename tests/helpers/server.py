"""A real server process for tests: any command on a free loopback port, ready once it answers.

    port = free_port()
    with running_server(["uvicorn", "app.main:app", "--port", str(port)], port=port,
                        env=env, cwd=root, log_path=tmp_path / "server.log") as server:
        httpx.get(f"{server.base_url}/healthz")

The process's output goes to `log_path` (a pipe nobody reads would fill up and block it); it is
quoted in every failure. Leaving the block stops the process with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def base_environment(**overrides: str) -> dict[str, str]:
    """A clean environment: this interpreter's bin directory first on PATH, nothing else inherited.

    Nothing leaks in from the developer's or CI's environment (a DATABASE_URL, say).
    """
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8", **overrides}


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; fails the test, quoting the log, if it does not."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server still running after {timeout}s:\n{self.log()}") from None

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def wait_until_ready(
    server: ServerProcess, path: str = "/healthz", timeout: float = 30.0
) -> httpx.Response:
    """Poll `path` until it answers 200; fail with the log if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise AssertionError(
                f"server exited with {server.process.returncode} before it was ready:\n"
                f"{server.log()}"
            )
        try:
            response = httpx.get(server.base_url + path, timeout=2.0)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} not ready after {timeout}s:\n{server.log()}")
        time.sleep(0.1)


@contextmanager
def running_server(
    command: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    ready_path: str = "/healthz",
    startup_timeout: float = 30.0,
) -> Iterator[ServerProcess]:
    """Start `command` (which must listen on `port`), wait until it is ready, stop it afterwards."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command), cwd=cwd, env=dict(env), stdout=log, stderr=subprocess.STDOUT
        )
    server = ServerProcess(process, f"http://{LOOPBACK}:{port}", log_path)
    try:
        wait_until_ready(server, ready_path, startup_timeout)
        yield server
    finally:
        server.stop()
