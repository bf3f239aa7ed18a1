"""`python -m app.serve`: several workers, one socket each, supervised (real processes, real
PostgreSQL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.serve import Supervisor, Worker, bound_sockets, clear_metrics_directory, parse
from app.store.db import PROJECT_ROOT
from tests.helpers.chatkit import create_thread_req
from tests.helpers.server import (
    LOOPBACK,
    TCP_ESTABLISHED,
    ServerProcess,
    app_server,
    base_environment,
    child_pids,
    listening_on,
    tcp_sockets,
)

QUIET = ["--no-access-log"]
BURST = 40  # connections opened at once


@pytest.fixture
def two_workers(tmp_path: Path, postgres_url: str) -> Iterator[ServerProcess]:
    # WEB_CONCURRENCY too: the workers must not read it (each would start two of its own).
    metrics = tmp_path / "prometheus"
    metrics.mkdir()
    settings = {
        "WEB_CONCURRENCY": "2",
        "AUTH_TRUST_USER_HEADERS": "true",
        "METRICS_ENABLED": "true",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }
    with app_server(tmp_path, postgres_url, settings, uvicorn_args=QUIET, workers=2) as server:
        for worker in wait_for_workers(server, 2):
            assert child_pids(worker) == []  # one process each: WEB_CONCURRENCY not passed on
        yield server


def metrics_directory(server: ServerProcess) -> Path:
    return server.log_path.parent / "prometheus"


def wait_for_workers(server: ServerProcess, count: int, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(pids := child_pids(server.process.pid)) != count:
        assert time.monotonic() < deadline, (pids, server.log())
        time.sleep(0.1)
    return pids


def sockets_held(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def open_burst(port: int, count: int) -> list[socket.socket]:
    """`count` connections opened before any is used (all waiting to be accepted at once),
    then one request on each, answered, and the connections kept open."""
    connections = [socket.create_connection((LOOPBACK, port), timeout=30) for _ in range(count)]
    request = f"GET /healthz HTTP/1.1\r\nHost: {LOOPBACK}\r\n\r\n".encode()
    for connection in connections:
        connection.sendall(request)
    for connection in connections:
        assert connection.recv(4096).startswith(b"HTTP/1.1 200"), "no answer"
    return connections


def test_a_burst_of_connections_is_spread_over_both_workers(two_workers: ServerProcess) -> None:
    workers = child_pids(two_workers.process.pid)
    connections = open_burst(two_workers.port, BURST)
    try:
        accepted = tcp_sockets(two_workers.port, TCP_ESTABLISHED)
        held = [len(sockets_held(pid) & accepted) for pid in workers]
    finally:
        for connection in connections:
            connection.close()
    assert sum(held) == BURST, held
    # The kernel hashes each connection to one worker's socket: each gets about half (a split
    # worse than 8/32 happens once in 24,000 runs). uvicorn's shared socket gave one worker all
    # 40 in three bursts of ten.
    assert min(held) >= BURST // 5, held


def test_a_socket_listens_only_once_its_worker_has_started(
    tmp_path: Path, postgres_url: str
) -> None:
    """Until then the kernel sends its connections to the workers already up (or, before any
    is, refuses them, as one uvicorn does): none waits on a worker that is still starting."""
    with app_server(tmp_path, postgres_url, uvicorn_args=QUIET, workers=2, ready=False) as server:
        samples: list[tuple[int, int]] = []
        deadline = time.monotonic() + 90
        while not samples or samples[-1][0] < 2:
            assert time.monotonic() < deadline, server.log()
            listening = listening_on(server.port)  # first: a worker logs before it listens
            log = server.log()
            if "serving" in log:  # the supervisor has bound the sockets
                samples.append((listening, log.count("Application startup complete")))
            time.sleep(0.01)
    assert samples[0] == (0, 0), samples[:5]  # bound, not listening, while both start
    assert all(listening <= started for listening, started in samples), samples


def test_a_killed_worker_is_replaced_and_its_connections_wait_for_it(
    two_workers: ServerProcess,
) -> None:
    killed, survivor = child_pids(two_workers.process.pid)
    # Its live gauges (connections in use, say) are its own file in the metrics directory.
    live_gauges = list(metrics_directory(two_workers).glob(f"gauge_live*_{killed}.db"))
    assert live_gauges
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while killed in child_pids(two_workers.process.pid):  # until the supervisor reaps it
        assert time.monotonic() < deadline, two_workers.log()
        time.sleep(0.05)
    # New connections at once, before its replacement can serve: those the kernel hashes to the
    # dead worker's socket wait in its queue (the supervisor keeps the socket) and are answered
    # by the new worker.
    connections = open_burst(two_workers.port, BURST)
    try:
        workers = child_pids(two_workers.process.pid)
        assert len(workers) == 2 and survivor in workers, workers
        (replacement,) = set(workers) - {survivor}
        accepted = tcp_sockets(two_workers.port, TCP_ESTABLISHED)
        held_by_replacement = len(sockets_held(replacement) & accepted)
    finally:
        for connection in connections:
            connection.close()
    assert held_by_replacement >= BURST // 5
    assert f"worker {killed} exited with status -9: restarting it" in two_workers.log()
    assert not any(path.exists() for path in live_gauges)  # a dead worker's gauges do not count


def test_sigterm_lets_a_stream_finish_refuses_new_connections_and_exits_cleanly(
    tmp_path: Path, postgres_url: str
) -> None:
    slow = {"FAKE_MODEL_TOKENS": "40", "FAKE_MODEL_DELAY_MS": "50"}  # a reply of about 2 s
    args = [*QUIET, "--timeout-graceful-shutdown", "20"]
    with (
        app_server(tmp_path, postgres_url, slow, uvicorn_args=args, workers=2) as server,
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST",
            f"{server.base_url}/chatkit",
            json=create_thread_req("A slow reply, please"),
            headers={"X-User-Id": "drain-user"},
        ) as response,
    ):
        workers = wait_for_workers(server, 2)
        lines = response.iter_lines()
        assert any('"thread.item.updated"' in line for line in lines)  # the reply is streaming
        server.signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while listening_on(server.port):  # until the supervisor has stopped both sockets
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((LOOPBACK, server.port), timeout=5)
        rest = "\n".join(lines)  # the stream goes on to its end
        assert server.wait(timeout=30) == 0, server.log()
    assert '"type":"assistant_message"' in rest.replace(" ", "") and "thread.item.done" in rest
    assert server.log().count("Application shutdown complete") == 2, server.log()
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT])
def test_a_hangup_or_quit_stops_the_workers_as_sigterm_does(
    two_workers: ServerProcess, signum: int
) -> None:
    # Left to their defaults, they would end the supervisor alone and leave its workers serving.
    workers = child_pids(two_workers.process.pid)
    two_workers.signal(signum)
    assert two_workers.wait(timeout=30) == 0, two_workers.log()
    assert two_workers.log().count("Application shutdown complete") == 2, two_workers.log()
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists()


def test_one_worker_is_uvicorn_itself(tmp_path: Path, postgres_url: str) -> None:
    with app_server(tmp_path, postgres_url, uvicorn_args=QUIET, workers=1) as server:
        command = Path(f"/proc/{server.process.pid}/cmdline").read_bytes().split(b"\0")
        assert command[1:4] == [b"-m", b"uvicorn", b"app.main:app"]  # exec'd: the same process
        assert child_pids(server.process.pid) == []
        assert httpx.get(f"{server.base_url}/healthz").status_code == 200


def serve_once(workdir: Path, port: int, **settings: str) -> subprocess.CompletedProcess[str]:
    """`python -m app.serve --workers 2` on `port` in `workdir`, for one that must not serve."""
    command = [sys.executable, "-m", "app.serve", "--workers", "2", "--port", str(port)]
    env = base_environment(PYTHONPATH=str(PROJECT_ROOT), HOST=LOOPBACK, **settings)
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=60)


def test_a_bad_setting_is_refused_before_any_worker_starts(tmp_path: Path) -> None:
    result = serve_once(tmp_path, 0, ENVIRONMENT="production")
    assert result.returncode == 1
    assert "ENVIRONMENT=production refuses: no auth method" in result.stderr
    assert "worker" not in result.stderr


def test_a_worker_that_cannot_start_stops_the_server(tmp_path: Path, postgres_url: str) -> None:
    # The settings pass, but an option the launcher hands on is one uvicorn refuses.
    args = [*QUIET, "--loop", "no-such-loop"]
    with app_server(tmp_path, postgres_url, uvicorn_args=args, workers=2, ready=False) as server:
        assert server.wait(timeout=90) == 3, server.log()
    log = server.log()
    assert "Error loading custom loop setup function" in log
    assert "failed to start (status 3): stopping" in log
    assert "restarting" not in log


def test_an_address_in_use_is_refused_with_a_reason(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve_once(tmp_path, port)
    assert result.returncode == 1
    assert f"cannot listen on {LOOPBACK}:{port} (in use): check HOST and PORT" in result.stderr


def test_options_default_to_the_environment_and_the_rest_goes_to_uvicorn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    options, rest = parse(["--proxy-headers", "--log-level", "warning"])
    assert (options.host, options.port, options.workers) == ("0.0.0.0", 9000, 4)
    assert rest == ["--proxy-headers", "--log-level", "warning"]
    options, rest = parse(["--workers", "2", "--port", "1234", "--http", "httptools"])
    assert (options.port, options.workers, rest) == (1234, 2, ["--http", "httptools"])
    options, rest = parse(["--workers", "1", "--reload"])  # one process: uvicorn's to decide
    assert (options.workers, rest) == (1, ["--reload"])


@pytest.mark.parametrize(
    ("argv", "environment", "message"),
    [
        (["--workers", "0"], {}, "argument --workers: invalid positive value: '0'"),
        ([], {"WEB_CONCURRENCY": "two"}, "argument --workers: invalid positive value: 'two'"),
        ([], {"PORT": "abc"}, "argument --port: invalid port_number value: 'abc'"),
        (["--port", "70000"], {}, "argument --port: invalid port_number value: '70000'"),
        (["--workers", "2", "--reload"], {}, "--reload serves one process: not with --workers"),
        (["--workers", "2", "--uds", "/tmp/s"], {}, "--uds serves one process"),
    ],
)
def test_bad_options_are_refused_naming_the_option(
    argv: list[str],
    environment: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_only_prometheus_files_are_cleared_from_the_metrics_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["counter_12.db", "gauge_livesum_12.db", "histogram_7.db", "chatkit.db", "notes.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    clear_metrics_directory()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["chatkit.db", "notes.txt"]


def test_a_second_server_on_the_port_is_refused_even_while_the_first_starts(
    tmp_path: Path, postgres_url: str
) -> None:
    with app_server(tmp_path, postgres_url, uvicorn_args=QUIET, workers=2, ready=False) as first:
        deadline = time.monotonic() + 60
        while "serving" not in first.log():  # its sockets bound, its workers not up yet
            assert time.monotonic() < deadline, first.log()
            time.sleep(0.01)
        second = serve_once(tmp_path, first.port)
        assert second.returncode == 1, second.stderr
        assert f"cannot listen on {LOOPBACK}:{first.port} (another app.serve has it)" in (
            second.stderr
        )
        first.wait_for_listeners(2)  # the first serves on, alone


def test_a_socket_that_starts_listening_after_the_stop_is_stopped_too() -> None:
    """A worker still starting when asked to stop listens before it stops (uvicorn finishes its
    startup first): the supervisor's loop stops that socket too, so no connection waits in a
    queue nobody reads while the other workers drain."""
    claim, sockets = bound_sockets(LOOPBACK, 0, 2)
    try:
        supervisor = Supervisor(claim, sockets, [])
        supervisor.stop(signal.SIGTERM)  # no worker yet: nothing listens, nothing to stop
        late = sockets[1]
        late.listen()  # what the late worker's uvicorn does
        port = late.getsockname()[1]
        socket.create_connection((LOOPBACK, port), timeout=5).close()  # it takes connections
        supervisor.refuse_connections()  # the loop's next turn
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((LOOPBACK, port), timeout=5)
    finally:
        for sock in [claim, *sockets]:
            sock.close()


def test_a_restart_waits_only_after_a_young_death() -> None:
    with socket.socket() as listener, subprocess.Popen(["true"]) as process:
        worker = Worker(listener, [], process, started_at=time.monotonic() - 30)
        worker.schedule_restart()  # it served a while (--limit-max-requests, say): at once
        assert worker.restart_at is not None and worker.restart_at <= time.monotonic()
        worker.started_at = time.monotonic()
        delays = []
        for _ in range(7):  # dead within seconds, again and again: 1, 2, 4 ... up to 30 s
            worker.schedule_restart()
            assert worker.restart_at is not None
            delays.append(round(worker.restart_at - time.monotonic()))
        assert delays == [1, 2, 4, 8, 16, 30, 30]
        worker.started_at -= 30  # a long life again: at once, and the count starts over
        worker.schedule_restart()
        assert worker.restart_at <= time.monotonic() and worker.quick_deaths == 0
