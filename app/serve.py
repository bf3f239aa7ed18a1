"""Start the server: `python -m app.serve [--host H] [--port P] [--workers N] [uvicorn options]`.

`--host`, `--port` and `--workers` default to `HOST`, `PORT` and `WEB_CONCURRENCY` (else
127.0.0.1, 8000 and 1); every other option goes to uvicorn, which serves `app.main:app`.

With one worker this process becomes uvicorn (exec), so uvicorn handles the signals itself.

With N workers it binds N sockets to the same address with `SO_REUSEPORT`, one per worker, and
the kernel spreads new connections evenly across those listening (each from the moment its
worker has started). uvicorn's own `--workers` shares one socket, and whichever worker wakes
first accepts every connection waiting: in the benchmark one worker took a whole burst while
the other idled (`bench/README.md`). This process checks the settings first (a bad one fails
here, named, before any worker starts), then supervises:
- SIGTERM and SIGINT go to every worker (each in its own process group, so a terminal's Ctrl-C
  reaches them once, through here), and SIGHUP and SIGQUIT as SIGTERM; the workers finish their
  streams (`--timeout-graceful-shutdown`) before this process exits; new connections are
  refused meanwhile, as by one uvicorn;
- a worker that ends by itself (`--limit-max-requests`), is killed by a signal (the OOM
  killer's, say) or fails after its first `STARTUP_SECONDS` is started again on its own socket,
  so the connections waiting there are served, not refused (one that dies within
  `YOUNG_SECONDS` of its start again and again is started again after 1, 2, 4 ... up to 30 s);
- a worker that exits with an error status sooner failed to start (a bad uvicorn option, an app
  that cannot start): it would fail the same way again, so every worker is stopped and this
  process exits with that status, for the platform to report and restart.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.config import ConfigurationError, load_settings
from app.logging import configure_logging

APP = "app.main:app"
STARTUP_SECONDS = 60.0  # an error exit sooner than this after a start is a failure to start
YOUNG_SECONDS = 10.0  # a worker that dies sooner never really served: its restart waits
RESTART_DELAY_SECONDS = 1.0  # doubled for each young death in a row, up to the maximum
MAX_RESTART_DELAY_SECONDS = 30.0
# What each signal this process takes becomes for the workers: uvicorn drains on SIGTERM and
# SIGINT (a second SIGINT: it stops without waiting), and would die at once on the others, which
# would otherwise end this process alone and leave its workers serving (a closed terminal's
# SIGHUP reaches only its foreground process group, this one).
FORWARDED_SIGNALS = {
    signal.SIGTERM: signal.SIGTERM,
    signal.SIGINT: signal.SIGINT,
    signal.SIGHUP: signal.SIGTERM,
    signal.SIGQUIT: signal.SIGTERM,
}
# Options that would take a worker off its socket, or add a process between it and us.
SINGLE_PROCESS_OPTIONS = ("--fd", "--uds", "--reload", "--reload-dir")
# prometheus_client's files in its multiprocess directory: kind and process id.
METRICS_FILE = re.compile(r"(counter|gauge_\w+|histogram|summary)_\d+\.db")

logger = logging.getLogger("app.serve")


@dataclass
class Worker:
    """One uvicorn process serving `listener`, the socket that belongs to its slot for good."""

    listener: socket.socket
    uvicorn_args: Sequence[str]
    process: subprocess.Popen[bytes]
    started_at: float
    quick_deaths: int = 0  # young deaths in a row before this process: the next wait doubles
    reaped: bool = False  # its exit has been dealt with
    restart_at: float | None = None

    @classmethod
    def start(
        cls, listener: socket.socket, uvicorn_args: Sequence[str], quick_deaths: int = 0
    ) -> Worker:
        fd = listener.fileno()
        command = [sys.executable, "-m", "uvicorn", APP, "--fd", str(fd), *uvicorn_args]
        # Its own process group: a terminal's Ctrl-C reaches this process only, which passes
        # it on once (a second SIGINT would make uvicorn skip its shutdown).
        process = subprocess.Popen(
            command, pass_fds=(fd,), env=worker_environment(), process_group=0
        )
        logger.info("worker %d started on %s", process.pid, address(listener))
        return cls(listener, uvicorn_args, process, time.monotonic(), quick_deaths)

    def schedule_restart(self) -> None:
        """At once if it served a while (`--limit-max-requests`, the OOM killer); later each
        time it died within `YOUNG_SECONDS` (killed while starting, say): no busy loop."""
        if time.monotonic() - self.started_at < YOUNG_SECONDS:
            delay = RESTART_DELAY_SECONDS * 2**self.quick_deaths
            self.restart_at = time.monotonic() + min(delay, MAX_RESTART_DELAY_SECONDS)
            self.quick_deaths += 1
        else:
            self.restart_at = time.monotonic()
            self.quick_deaths = 0

    def restart(self) -> Worker:
        return Worker.start(self.listener, self.uvicorn_args, self.quick_deaths)


def worker_environment() -> dict[str, str]:
    """Ours, less `WEB_CONCURRENCY`: uvicorn reads it as `--workers`, and each worker is one."""
    return {name: value for name, value in os.environ.items() if name != "WEB_CONCURRENCY"}


def address(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bound_sockets(host: str, port: int, count: int) -> tuple[socket.socket, list[socket.socket]]:
    """`count` sockets bound to one address, for the kernel to balance connections across, and
    this server's claim on the port (hold it while serving).

    They are not listening yet: each worker's uvicorn listens once its app has started, so no
    connection waits on a worker that is still starting while another could answer it (one
    uvicorn, too, refuses connections until it has started). A worker that dies leaves its
    socket listening, so the connections queued there wait for its replacement.

    `SO_REUSEPORT` would also let a second copy of this server join the group and take half its
    connections. So the address is first bound without it (that fails if anything listens
    there), and the port is claimed with an abstract Unix socket named after it, which a second
    copy cannot bind even while nothing listens yet (per network namespace, like the port).
    `host` is one address (uvicorn's rule: IPv6 if it has a colon), not every address of a name.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bind_or_exit(probe, host, port)
        port = probe.getsockname()[1]  # a port of 0 becomes a free one, the same for every worker
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(f"\0app.serve:{port}")
    except OSError:
        raise SystemExit(f"cannot listen on {host}:{port} (another app.serve has it)") from None
    bound: list[socket.socket] = []
    for _ in range(count):
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        bind_or_exit(listener, host, port)
        bound.append(listener)
    return claim, bound


def bind_or_exit(sock: socket.socket, host: str, port: int) -> None:
    try:
        sock.bind((host, port))
    except OSError as error:
        reason = "in use" if error.errno == errno.EADDRINUSE else error.strerror
        raise SystemExit(
            f"cannot listen on {host}:{port} ({reason}): check HOST and PORT"
        ) from None


def clear_metrics_directory() -> None:
    """Remove the files a previous run left in `PROMETHEUS_MULTIPROC_DIR` (they are per process
    id, and would be added to this run's figures): `prometheus_client`'s own, nothing else."""
    if directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        for path in Path(directory).glob("*.db"):
            if METRICS_FILE.fullmatch(path.name):
                path.unlink(missing_ok=True)


def mark_dead(pid: int) -> None:
    """Drop a dead worker's live gauges from the multiprocess metrics (its counters stay)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class Supervisor:
    """Keeps one worker per socket running until a signal asks it to stop.

    Signals arrive through a socket pair (`signal.set_wakeup_fd`), not a Python handler's state:
    the loop sleeps on it, and nothing a handler could interrupt holds a lock.
    """

    def __init__(
        self, claim: socket.socket, sockets: list[socket.socket], uvicorn_args: Sequence[str]
    ) -> None:
        self.claim = claim  # held until this process exits
        self.sockets = sockets
        self.uvicorn_args = uvicorn_args
        self.workers: list[Worker] = []
        self.stopping = False
        self.exit_status = 0

    def run(self) -> int:
        wakeup_read, wakeup_write = socket.socketpair()
        wakeup_write.setblocking(False)
        signal.set_wakeup_fd(wakeup_write.fileno())
        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, lambda *_: None)  # the wake-up pipe carries it
        try:
            self.workers = [Worker.start(sock, self.uvicorn_args) for sock in self.sockets]
            while not self.stopping or any(w.process.poll() is None for w in self.workers):
                if select.select([wakeup_read], [], [], 0.2)[0]:
                    for received in wakeup_read.recv(64):
                        self.pass_on(received)
                self.look_after_workers()
                if self.stopping:
                    self.refuse_connections()
        finally:
            for worker in self.workers:  # only left running if this loop failed
                if worker.process.poll() is None:
                    worker.process.terminate()
                worker.process.wait()
        return self.exit_status

    def pass_on(self, signum: int) -> None:
        """Every signal goes to every worker, as `FORWARDED_SIGNALS` translates it."""
        if not self.stopping:
            logger.info("%s: stopping the workers", signal.Signals(signum).name)
        self.stop(FORWARDED_SIGNALS[signal.Signals(signum)])

    def stop(self, signum: int) -> None:
        """Signal the workers, and refuse new connections at once, as one uvicorn would: the
        workers hold copies of the sockets for as long as they drain."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signum)
        self.stopping = True
        self.refuse_connections()

    def refuse_connections(self) -> None:
        """Stop every socket that listens: now, and again on each turn of the loop while the
        workers stop, for a worker still starting when asked to stop listens before it stops
        (uvicorn finishes its startup first), and nobody would accept from its queue."""
        for listener in self.sockets:
            if listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                with contextlib.suppress(OSError):  # Linux stops listening; elsewhere, no harm
                    listener.shutdown(socket.SHUT_RD)

    def look_after_workers(self) -> None:
        for slot, worker in enumerate(self.workers):
            if not worker.reaped and (status := worker.process.poll()) is not None:
                self.reap(worker, status)
            if not self.stopping and worker.restart_at and time.monotonic() >= worker.restart_at:
                self.workers[slot] = worker.restart()

    def reap(self, worker: Worker, status: int) -> None:
        worker.reaped = True
        pid = worker.process.pid
        mark_dead(pid)
        if self.stopping:
            return
        if status > 0 and time.monotonic() - worker.started_at < STARTUP_SECONDS:
            logger.error("worker %d failed to start (status %d): stopping", pid, status)
            self.exit_status = status
            self.stop(signal.SIGTERM)
            return
        logger.warning("worker %d exited with status %d: restarting it", pid, status)
        worker.schedule_restart()


def port_number(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError(value)
    return port


def positive(value: str) -> int:
    count = int(value)
    if count < 1:
        raise ValueError(value)
    return count


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m app.serve",
        description="Serve app.main:app with uvicorn; other options go to uvicorn.",
        allow_abbrev=False,
    )
    environment = os.environ.get
    # String defaults: argparse converts them too, so a bad PORT is an error that names it.
    parser.add_argument(
        "--host", default=environment("HOST") or "127.0.0.1", help="default: $HOST or 127.0.0.1"
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=environment("PORT") or "8000",
        help="default: $PORT or 8000",
    )
    parser.add_argument(
        "--workers",
        type=positive,
        default=environment("WEB_CONCURRENCY") or "1",
        help="worker processes (default: $WEB_CONCURRENCY or 1)",
    )
    options, uvicorn_args = parser.parse_known_args(argv)
    if options.workers > 1:
        for option in SINGLE_PROCESS_OPTIONS:
            if any(arg == option or arg.startswith(f"{option}=") for arg in uvicorn_args):
                parser.error(f"{option} serves one process: not with --workers (WEB_CONCURRENCY)")
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
    claim, sockets = bound_sockets(options.host, options.port, options.workers)
    logger.info("serving %s with %d workers", address(sockets[0]), options.workers)
    return Supervisor(claim, sockets, uvicorn_args).run()


if __name__ == "__main__":
    sys.exit(main())
