"""Real server processes on loopback, for tests and benchmarks: a free port, a process, its log.

    with app_server(tmp_path, database_url, {"AUTH_JWT_SECRET": secret}) as server:  # ours
        httpx.get(f"{server.base_url}/healthz")

    port = free_port()
    with start_server(["node", "server.mjs"], port=port, env=env, cwd=root,
                      log_path=tmp_path / "node.log") as server:   # any command
        ...

A process's output goes to `log_path` (a pipe nobody reads would fill up and block it); it is
quoted in every failure. Leaving the block (or `stop()`) stops the process with SIGTERM, then
SIGKILL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import httpx

from app.store.db import PROJECT_ROOT

LOOPBACK = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def wait_until_ready(self, path: str = "/healthz", timeout: float = 90.0) -> None:
        """Poll `path` until it answers 200; fail with the log if the process exits or time
        runs out."""

        def answers() -> bool:
            return httpx.get(self.base_url + path, timeout=2.0).status_code == 200

        self._wait_for(answers, path, timeout)

    def wait_until_listening(self, timeout: float = 30.0) -> None:
        """Wait until the port takes connections: for a server with no route that answers 200
        to a plain GET (an MCP server's)."""

        def connects() -> bool:
            with socket.create_connection((LOOPBACK, self.port), timeout=2.0):
                return True

        self._wait_for(connects, f"port {self.port}", timeout)

    def wait_for_listeners(self, count: int, timeout: float = 90.0) -> None:
        """Wait until `count` sockets listen on the port: every worker of `python -m app.serve`
        has started (each listens on its own socket once its app is up)."""

        def all_listening() -> bool:
            return listening_on(self.port) == count

        self._wait_for(all_listening, f"{count} listeners on port {self.port}", timeout)

    def _wait_for(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.process.returncode} before it was ready:\n"
                    f"{self.log()}"
                )
            try:
                if ready():
                    return
            except (httpx.TransportError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not ready after {timeout}s:\n{self.log()}")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(
    command: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    ready_path: str | None = "/healthz",
    startup_timeout: float = 90.0,
) -> ServerProcess:
    """Start `command` (which must listen on `port`) and, unless `ready_path` is None, wait
    until it answers there. The caller stops it, or uses it as a context manager."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command), cwd=cwd, env=dict(env), stdout=log, stderr=subprocess.STDOUT
        )
    server = ServerProcess(process, f"http://{LOOPBACK}:{port}", log_path)
    if ready_path is not None:
        try:
            server.wait_until_ready(ready_path, startup_timeout)
        except BaseException:
            server.stop()
            raise
    return server


def app_command(port: int, *uvicorn_args: str, workers: int | None = None) -> list[str]:
    """uvicorn serving `app.main:app` on `port`, from any working directory; with `workers`,
    through `python -m app.serve` (which needs `PYTHONPATH` to find `app`)."""
    if workers is None:
        command = [sys.executable, "-m", "uvicorn", "app.main:app"]
    else:
        command = [sys.executable, "-m", "app.serve", "--workers", str(workers)]
    return [
        *[*command, "--app-dir", str(PROJECT_ROOT)],
        *["--host", LOOPBACK, "--port", str(port), *uvicorn_args],
    ]


TCP_LISTEN, TCP_ESTABLISHED = "0A", "01"


def tcp_sockets(port: int, state: str) -> set[int]:
    """Inodes of this machine's TCP sockets whose local port is `port`, in `state`
    (`TCP_LISTEN`, `TCP_ESTABLISHED`), from /proc/net."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                inodes.add(int(fields[9]))
    return inodes


def listening_on(port: int) -> int:
    """How many sockets listen on `port` (several, with `SO_REUSEPORT`)."""
    return len(tcp_sockets(port, TCP_LISTEN))


def child_pids(pid: int) -> list[int]:
    """The processes `pid` started that are still running (or not yet reaped)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else []


@contextmanager
def app_server(
    workdir: Path,
    database_url: str,
    settings: Mapping[str, str] | None = None,
    *,
    uvicorn_args: Sequence[str] = (),
    port: int | None = None,
    ready: bool = True,
    workers: int | None = None,
) -> Iterator[ServerProcess]:
    """This project's server as uvicorn runs it, on `port` (else a free one), started in
    `workdir` (where its log goes) so that no developer's `.env` gets in. Its environment is
    development on `database_url` with the fake model answering at once, plus `settings`.
    `ready=False` returns at once: call `wait_until_ready` (to start several in parallel).
    `workers` starts it as `python -m app.serve --workers N` does."""
    port = port or free_port()
    environment = {
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "development",
        "MODEL_PROVIDER": "fake",
        "FAKE_MODEL_DELAY_MS": "0",
        **({"PYTHONPATH": str(PROJECT_ROOT)} if workers is not None else {}),
        **(settings or {}),
    }
    with start_server(
        app_command(port, *uvicorn_args, workers=workers),
        port=port,
        env=base_environment(**environment),
        cwd=workdir,
        log_path=workdir / f"server-{port}.log",
        ready_path="/healthz" if ready else None,
        startup_timeout=90,  # the app's imports take seconds on a busy machine
    ) as server:
        if ready and workers is not None:
            server.wait_for_listeners(workers)  # /healthz answered from the first one up
        yield server
