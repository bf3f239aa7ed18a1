"""The platform files' own values (fly.toml, .railway/railway.ts, docker-compose.yml)."""

from __future__ import annotations

import re
import shlex
import tomllib
from typing import Any

from app.store.db import PROJECT_ROOT

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
