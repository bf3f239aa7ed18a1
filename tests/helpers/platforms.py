"""The platform files' own values (fly.toml, .railway/railway.ts, docker-compose.yml)."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from app.store.db import PROJECT_ROOT
from tests.helpers.dockerfile import RuntimeImage
from tests.helpers.server import base_environment

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
