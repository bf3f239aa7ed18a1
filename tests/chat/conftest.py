"""The terminal client against real servers: uvicorn processes on a migrated PostgreSQL database.

- `chat_server`: the fake model (a slow enough stream to see it arrive in pieces), trusted
  `X-User-Id` headers as in the README's local demo, and HS256 tokens signed with `JWT_SECRET`;
- `unconfigured_server`: `MODEL_PROVIDER=openai` with no key, so every turn ends with an error
  event; a daily quota of one message, so the second is refused with a 429; and a required
  domain key, `DOMAIN_KEY`.

`stored` reads what the database holds, through the app's own stores.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest
from chatkit.types import Attachment, ThreadItem

from app.context import RequestContext
from app.services import Services
from app.store.db import PROJECT_ROOT
from app.store.tasks import Task
from tests.conftest import make_settings, worker_database_name
from tests.helpers.database import drop_postgres_database, fresh_postgres_database, migrate
from tests.helpers.server import ServerProcess, app_server, base_environment

FAKE_MODEL_TOKENS = 12
FAKE_MODEL_DELAY_MS = 40
"""A reply takes about half a second: long enough to see it arrive word by word."""
JWT_SECRET = "terminal-client-test-secret-0123456789"
DOMAIN_KEY = "terminal-domain-key"


@pytest.fixture(scope="session")
def chat_database_url() -> Iterator[str]:
    name = f"{worker_database_name()}_chat"
    url = fresh_postgres_database(name)
    migrate(url)
    yield url
    drop_postgres_database(name)


def serve(database_url: str, workdir: Path, **settings: str) -> Iterator[ServerProcess]:
    headers = {"AUTH_TRUST_USER_HEADERS": "true", "LOG_LEVEL": "WARNING"}
    with app_server(
        workdir, database_url, headers | settings, uvicorn_args=["--no-access-log"]
    ) as server:
        yield server


CHAT_SERVER = {
    "MODEL_PROVIDER": "fake",
    "FAKE_MODEL_TOKENS": str(FAKE_MODEL_TOKENS),
    "FAKE_MODEL_DELAY_MS": str(FAKE_MODEL_DELAY_MS),
    "AUTH_JWT_SECRET": JWT_SECRET,
}
UNCONFIGURED_SERVER = {
    "MODEL_PROVIDER": "openai",
    "RATE_LIMIT_DAILY_MESSAGES": "free=1",
    "CHATKIT_DOMAIN_KEYS": DOMAIN_KEY,
}


@pytest.fixture(scope="session")
def chat_server(
    chat_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    yield from serve(chat_database_url, tmp_path_factory.mktemp("chat"), **CHAT_SERVER)


@pytest.fixture(scope="session")
def unconfigured_server(
    chat_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    yield from serve(chat_database_url, tmp_path_factory.mktemp("chat"), **UNCONFIGURED_SERVER)


@pytest.fixture
def chat_url(chat_server: ServerProcess) -> str:
    return f"{chat_server.base_url}/chatkit"


@pytest.fixture
def user_id() -> str:
    return f"chat-{uuid4().hex[:12]}"


@dataclass
class Stored:
    """What the database holds for one user, read through the app's stores."""

    services: Services

    async def items(self, user_id: str, thread_id: str) -> list[ThreadItem]:
        page = await self.services.store.load_thread_items(
            thread_id, None, 100, "asc", context(user_id)
        )
        return list(page.data)

    async def thread_ids(self, user_id: str) -> list[str]:
        page = await self.services.store.load_threads(100, None, "desc", context(user_id))
        return [thread.id for thread in page.data]

    async def attachment(self, user_id: str, attachment_id: str) -> Attachment:
        return await self.services.store.load_attachment(attachment_id, context(user_id))

    async def content(self, user_id: str, attachment_id: str) -> bytes | None:
        return await self.services.attachments.read_content(attachment_id, user_id)

    async def task_list(self, user_id: str) -> list[Task]:
        return await self.services.tasks.list(user_id)


def context(user_id: str) -> RequestContext:
    return RequestContext(user_id=user_id, auth_method="development")


@pytest.fixture(scope="session")
async def stored(chat_database_url: str) -> AsyncIterator[Stored]:
    services = Services.build(make_settings(chat_database_url))
    async with services.lifespan():
        yield Stored(services)


def run_cli(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m app.chat ARGS` with only `env` set (no CHATKIT_* from the developer's)."""
    return run_command([sys.executable, "-m", "app.chat", *args], stdin=stdin, env=env)


def run_command(
    command: list[str],
    *,
    stdin: str | None = None,
    cwd: Path = PROJECT_ROOT,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`command` with only `env` set, beside the interpreter's PATH."""
    return subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=base_environment(**(env or {})),
        timeout=120,
    )
