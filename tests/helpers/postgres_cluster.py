"""A PostgreSQL server of a test's own, which the test may stop and start at will.

Outage tests must never stop the server other checkouts and workers share, so they `initdb` a
throwaway cluster in a temporary directory, on a free loopback port, with trust authentication.
As root (PostgreSQL refuses to run as root) the cluster belongs to the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.helpers.server import free_port


def postgres_bin_dir() -> Path | None:
    """The newest installed server binaries (Debian keeps them off PATH), if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


class PostgresCluster:
    """`initdb`, then `start`/`stop` as often as needed; `destroy` removes everything."""

    def __init__(self, bin_dir: Path) -> None:
        # Not under pytest's tmp_path: the `postgres` user must be able to reach the directory.
        self.directory = Path(tempfile.mkdtemp(prefix="chatkit-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.bin_dir = bin_dir
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> PostgresCluster:
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-o", options)

    def create_database(self, name: str) -> str:
        """A new, empty database on this server; its async URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def stop(self, mode: str = "fast", *, wait: bool = True) -> None:
        """`fast` ends every session (SQLSTATE 57P01); `smart` waits for them, refusing new ones
        (57P03) meanwhile; with `wait=False` this returns while the server is shutting down."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w" if wait else "-W")

    def restart(self) -> None:
        """Back to a running server, whatever state a test left it in."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", check=False)
        self.start()

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        command = [str(self.bin_dir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=check, capture_output=True, timeout=60)
