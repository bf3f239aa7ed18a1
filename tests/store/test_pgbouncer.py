"""Behind PgBouncer in transaction mode: `DATABASE_PGBOUNCER=true` is what makes it work.

A real `pgbouncer` (Debian's package) on a free port, in front of the test database, with one
server connection, so that every client's statements share it: asyncpg's default named,
cached statements then collide there, which the setting avoids.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from chatkit.types import InferenceOptions, ThreadMetadata, UserMessageItem, UserMessageTextContent
from sqlalchemy.engine import make_url

from app.config import Settings
from app.store.db import create_engine
from app.store.store import SQLAlchemyStore, new_id
from tests.conftest import make_settings, new_user
from tests.helpers.server import ServerProcess, free_port, start_server

PGBOUNCER = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
)
pytestmark = pytest.mark.skipif(PGBOUNCER is None, reason="pgbouncer is not installed")


@pytest.fixture(scope="module")
def bouncer_url(postgres_url: str) -> Iterator[str]:
    """`postgres_url`, reached through a PgBouncer of the module's own (transaction mode)."""
    assert PGBOUNCER is not None
    target = make_url(postgres_url)
    port = free_port()
    # PgBouncer refuses to run as root: as root it switches to the `postgres` user (`-u`),
    # which must reach its files, so they are not under pytest's private tmp_path.
    directory = Path(tempfile.mkdtemp(prefix="chatkit-pgbouncer-"))
    as_postgres = ["-u", "postgres"] if os.geteuid() == 0 else []
    (directory / "users.txt").write_text(f'"{target.username}" ""\n')
    config = directory / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"{target.database} = host={target.host} port={target.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {directory / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 3\nmax_client_conn = 50\n"
        f"logfile = {directory / 'pgbouncer.log'}\n"
    )
    if as_postgres:
        for path in [directory, *directory.iterdir()]:
            shutil.chown(path, "postgres", "postgres")
    process: ServerProcess = start_server(
        [PGBOUNCER, *as_postgres, str(config)],
        port=port,
        env={},
        cwd=directory,
        log_path=directory / "stdout.log",
        ready_path=None,
    )
    try:
        with process:
            process.wait_until_listening()
            yield target.set(port=port).render_as_string(hide_password=False)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def many_writes(settings: Settings) -> None:
    """Twenty users each write a thread and an item, then read them back, all at once."""
    engine = create_engine(settings)
    store = SQLAlchemyStore(engine)

    async def one() -> None:
        user = new_user()
        thread = ThreadMetadata(id=new_id("thread"), created_at=datetime.now())
        await store.save_thread(thread, user)
        message = UserMessageItem(
            id=new_id("message"),
            thread_id=thread.id,
            created_at=datetime.now(),
            content=[UserMessageTextContent(text="hello")],
            attachments=[],
            inference_options=InferenceOptions(),
        )
        await store.add_thread_item(thread.id, message, user)
        assert (await store.load_thread(thread.id, user)).id == thread.id
        page = await store.load_thread_items(thread.id, None, 10, "asc", user)
        assert len(page.data) == 1

    try:
        for _ in range(3):  # the pool's connections are reused: their caches would be warm
            await asyncio.gather(*(one() for _ in range(20)))
    finally:
        await engine.dispose()


async def test_the_store_works_behind_pgbouncer_in_transaction_mode(bouncer_url: str) -> None:
    settings = make_settings(bouncer_url, database_pgbouncer=True, database_pool_size=5)
    await many_writes(settings)


async def test_without_the_setting_prepared_statements_collide(bouncer_url: str) -> None:
    """The control: the same load without `DATABASE_PGBOUNCER` fails, so the test above can."""
    settings = make_settings(bouncer_url, database_pool_size=5)
    with pytest.raises(Exception, match="prepared statement"):
        await many_writes(settings)


def test_the_setting_needs_postgresql(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="DATABASE_PGBOUNCER=true needs a postgresql"):
        make_settings(sqlite_url, database_pgbouncer=True)
