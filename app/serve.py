"""Start the server: `python -m app.serve [--host H] [--port P] [--workers N] [uvicorn options]`.

`--host`, `--port` and `--workers` default to `HOST`, `PORT` and `WEB_CONCURRENCY` (else
127.0.0.1, 8000 and 1); every other option goes to uvicorn, which serves `app.main:app`.

With one worker this process becomes uvicorn (exec), so uvicorn handles the signals itself.

With N workers it binds N listening sockets to the same address with `SO_REUSEPORT`, one per
worker, and the kernel spreads new connections evenly across them. uvicorn's own `--workers`
shares one socket, and whichever worker wakes first accepts every connection waiting: in the
benchmark one worker took a whole burst while the other idled (`bench/README.md`). This process
checks the settings first (a bad one fails here, named, before any worker starts), then
supervises:
- SIGTERM and SIGINT go to every worker, which finish their streams
  (`--timeout-graceful-shutdown`) before this process exits;
- a worker killed by a signal (the OOM killer's, say), or that exits later than
  `STARTUP_SECONDS` after it started (`--limit-max-requests`), is started again on its own
  socket, so the connections waiting there are served, not refused;
- a worker that exits with an error status sooner failed to start (a bad uvicorn option, an app
  that cannot start): it would fail the same way again, so every worker is stopped and this
  process exits with that status, for the platform to report and restart.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from app.config import ConfigurationError, load_settings
from app.logging import configure_logging

APP = "app.main:app"
STARTUP_SECONDS = 60.0  # an error exit sooner than this after a start is a failure to start
BACKLOG = 2048  # uvicorn's default
RESTART_DELAY_SECONDS = 1.0  # a worker that keeps dying is not started more often than this
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)

logger = logging.getLogger("app.serve")


@dataclass
class Worker:
    """One uvicorn process serving `listener`, the socket that belongs to its slot for good."""

    listener: socket.socket
    uvicorn_args: Sequence[str]
    process: subprocess.Popen[bytes]
    started_at: float
    reaped: bool = False  # its exit has been dealt with

    @classmethod
    def start(cls, listener: socket.socket, uvicorn_args: Sequence[str]) -> Worker:
        fd = listener.fileno()
        command = [sys.executable, "-m", "uvicorn", APP, "--fd", str(fd), *uvicorn_args]
        process = subprocess.Popen(command, pass_fds=(fd,), env=worker_environment())
        logger.info("worker %d started on %s", process.pid, address(listener))
        return cls(listener, uvicorn_args, process, time.monotonic())

    def restart(self) -> Worker:
        """A new process on the same socket, at most one a `RESTART_DELAY_SECONDS`."""
        time.sleep(max(0.0, self.started_at + RESTART_DELAY_SECONDS - time.monotonic()))
        return Worker.start(self.listener, self.uvicorn_args)


def worker_environment() -> dict[str, str]:
    """Ours, less `WEB_CONCURRENCY`: uvicorn reads it as `--workers`, and each worker is one."""
    return {name: value for name, value in os.environ.items() if name != "WEB_CONCURRENCY"}


def address(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one address, the kernel balancing connections across them.

    `SO_REUSEPORT` would also let a second copy of this server join the group and take half its
    connections, so the address is first bound without it: that fails if anything listens there.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            reason = "in use" if error.errno == errno.EADDRINUSE else error.strerror
            message = f"cannot listen on {host}:{port} ({reason}): check HOST and PORT"
            raise SystemExit(message) from None
        port = probe.getsockname()[1]  # a port of 0 becomes a free one, the same for every worker
    bound: list[socket.socket] = []
    for _ in range(count):
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((host, port))
        listener.listen(BACKLOG)
        bound.append(listener)
    return bound


def clear_metrics_directory() -> None:
    """Remove the files a previous run left in `PROMETHEUS_MULTIPROC_DIR` (they are per process
    id, and would be added to this run's figures). Only `prometheus_client`'s own `*.db`."""
    if directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        for path in Path(directory).glob("*.db"):
            path.unlink(missing_ok=True)


def mark_dead(pid: int) -> None:
    """Drop a dead worker's live gauges from the multiprocess metrics (its counters stay)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class Supervisor:
    """Keeps one worker per socket running until a signal asks it to stop."""

    def __init__(self, sockets: list[socket.socket], uvicorn_args: Sequence[str]) -> None:
        self.sockets = sockets
        self.uvicorn_args = uvicorn_args
        self.workers: list[Worker] = []
        self.received: list[int] = []  # signals not yet passed on
        self.wake = threading.Event()
        self.stopping = False
        self.exit_status = 0

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        self.wake.set()

    def run(self) -> int:
        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, self.on_signal)
        self.workers = [Worker.start(listener, self.uvicorn_args) for listener in self.sockets]
        while not self.stopping or any(w.process.poll() is None for w in self.workers):
            self.wake.wait(0.2)
            self.wake.clear()
            self.pass_signals_on()
            self.restart_dead_workers()
        return self.exit_status

    def pass_signals_on(self) -> None:
        """Every signal goes to every worker: a second one makes uvicorn stop without waiting."""
        while self.received:
            signum = self.received.pop(0)
            if not self.stopping:
                logger.info("%s: stopping the workers", signal.Signals(signum).name)
            self.stop(signum)

    def stop(self, signum: int) -> None:
        self.stopping = True
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signum)

    def restart_dead_workers(self) -> None:
        for slot, worker in enumerate(self.workers):
            status = worker.process.poll()
            if status is None or worker.reaped:
                continue
            worker.reaped = True
            pid = worker.process.pid
            mark_dead(pid)
            if self.stopping:
                continue
            if status > 0 and time.monotonic() - worker.started_at < STARTUP_SECONDS:
                logger.error("worker %d failed to start (status %d): stopping", pid, status)
                self.exit_status = status
                self.stop(signal.SIGTERM)
                continue
            logger.warning("worker %d exited with status %d: restarting it", pid, status)
            self.workers[slot] = worker.restart()


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m app.serve",
        description="Serve app.main:app with uvicorn; other options go to uvicorn.",
        allow_abbrev=False,
    )
    parser.add_argument("--host", default=os.environ.get("HOST") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY") or 1))
    options, uvicorn_args = parser.parse_known_args(argv)
    if options.workers < 1:
        parser.error(f"--workers (or WEB_CONCURRENCY) must be at least 1, not {options.workers}")
    return options, uvicorn_args


def main(argv: Sequence[str] | None = None) -> int:
    options, uvicorn_args = parse(sys.argv[1:] if argv is None else argv)
    clear_metrics_directory()
    if options.workers == 1:
        address_args = ["--host", options.host, "--port", str(options.port)]
        command = [sys.executable, "-m", "uvicorn", APP, *address_args, *uvicorn_args]
        os.execve(sys.executable, command, worker_environment())
    try:
        settings = load_settings()  # what each worker would refuse, refused once, before them
    except ConfigurationError as error:
        raise SystemExit(str(error)) from None
    configure_logging(settings.log_level)
    sockets = listeners(options.host, options.port, options.workers)
    logger.info("listening on %s with %d workers", address(sockets[0]), options.workers)
    return Supervisor(sockets, uvicorn_args).run()


if __name__ == "__main__":
    sys.exit(main())
