"""The platform files' own values (fly.toml, .railway/railway.ts, docker-compose.yml)."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.store.db import PROJECT_ROOT
from tests.helpers.dockerfile import RuntimeImage
from tests.helpers.server import ServerProcess, base_environment, free_port, start_server

FLY_TOML = PROJECT_ROOT / "fly.toml"
RAILWAY_TS = PROJECT_ROOT / ".railway" / "railway.ts"
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"


def fly_config() -> dict[str, Any]:
    with FLY_TOML.open("rb") as file:
        return tomllib.load(file)


def migration_command() -> list[str]:
    """What the platforms run before a release: Fly's `release_command`."""
    command: str = fly_config()["deploy"]["release_command"]
    return shlex.split(command)


def railway_service_option(name: str) -> str:
    """A literal option of the service in `.railway/railway.ts` (its types are checked by tsc in
    scripts/check_deploy.sh; this reads the values the tests compare)."""
    match = re.search(rf"^\s*{name}: (.+?),?\s*$", RAILWAY_TS.read_text(), re.MULTILINE)
    assert match, f"no `{name}:` in {RAILWAY_TS}"
    return match.group(1)


def platform_environment(image: RuntimeImage, **overrides: str) -> dict[str, str]:
    """The image's ENV plus what a platform sets, with the tests' identity convention
    (development, trusted X-User-Id) and the fake model."""
    test_settings = {
        "ENVIRONMENT": "development",
        "AUTH_TRUST_USER_HEADERS": "true",
        "MODEL_PROVIDER": "fake",
    }
    return base_environment(**(image.environment() | test_settings | overrides))


def run_release_step(root: Path, env: dict[str, str]) -> None:
    """Run the migration command as the platforms do before a release; it must succeed."""
    done = subprocess.run(
        migration_command(), cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


@dataclass
class ReleasedImage:
    image: RuntimeImage
    root: Path
    database_url: str
    logs: Path

    @contextmanager
    def serve(self, **settings: str) -> Iterator[ServerProcess]:
        """The image's CMD as a platform runs it, on a free port, with `settings` added."""
        port = free_port()
        env = platform_environment(
            self.image, DATABASE_URL=self.database_url, PORT=str(port), **settings
        )
        log_path = self.logs / f"server-{port}.log"
        with start_server(
            self.image.cmd, port=port, env=env, cwd=self.root, log_path=log_path
        ) as server:
            yield server
