"""The deployment files parse and agree with each other and with the image."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from app.config import Settings
from app.http.sse import STREAM_CLEANUP_SECONDS
from app.store.db import PROJECT_ROOT
from tests.helpers.dockerfile import read_runtime_image
from tests.helpers.platforms import (
    COMPOSE_FILE,
    fly_config,
    migration_command,
    railway_service_option,
)

# After SIGTERM: open streams run for up to GRACEFUL_SHUTDOWN_SECONDS, then interrupted ones save
# their partial replies for up to STREAM_CLEANUP_SECONDS; every platform must wait longer.
SHUTDOWN_BOUND = int(read_runtime_image().env["GRACEFUL_SHUTDOWN_SECONDS"]) + STREAM_CLEANUP_SECONDS


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return int(match.group(1))


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def test_image_command_serves_the_app_on_port_behind_a_proxy_with_bounded_shutdown() -> None:
    image = read_runtime_image()
    assert image.cmd[:2] == ["/bin/sh", "-c"]
    script = image.cmd[2]
    # exec: app.serve (uvicorn, or the workers' supervisor) gets SIGTERM as PID 1
    assert script.startswith("exec python -m app.serve ")
    for flag in (
        "--host 0.0.0.0",
        '--port "${PORT:-8000}"',
        "--loop uvloop --http httptools",  # named: an image without them fails, not slows
        "--proxy-headers",
        "--forwarded-allow-ips '*'",
        '--timeout-graceful-shutdown "${GRACEFUL_SHUTDOWN_SECONDS:-20}"',
    ):
        assert flag in script
    assert image.env["PYTHONUNBUFFERED"] == "1"
    assert "/healthz" in " ".join(image.healthcheck)
    assert {"app", "migrations", "alembic.ini"} <= set(image.copied)


def test_fly_migrates_before_release_checks_health_and_outlasts_graceful_shutdown() -> None:
    fly = fly_config()
    assert migration_command() == ["alembic", "upgrade", "head"]
    assert fly["kill_signal"] == "SIGTERM"
    assert fly["kill_timeout"] > SHUTDOWN_BOUND
    service = fly["http_service"]
    assert service["internal_port"] == int(fly["env"]["PORT"])
    assert [check["path"] for check in service["checks"]] == ["/healthz"]
    assert service["http_options"]["idle_timeout"] > 15  # above the default SSE keep-alive
    assert fly["env"]["ENVIRONMENT"] == "production"


def test_railway_runs_the_same_migration_and_health_check_and_drains_long_enough() -> None:
    assert json.loads(railway_service_option("preDeploy")) == " ".join(migration_command())
    assert json.loads(railway_service_option("healthcheck")) == "/healthz"
    draining = re.search(r"drainingSeconds: (\d+)", railway_service_option("deploy"))
    assert draining and int(draining.group(1)) > SHUTDOWN_BOUND
    assert railway_service_option("DATABASE_URL") == "db.env.DATABASE_URL"


def test_compose_migrates_once_then_starts_the_app_with_optional_env_file() -> None:
    services = compose()["services"]
    assert services["migrate"]["command"] == migration_command()
    assert services["db"]["healthcheck"]["test"][0] == "CMD-SHELL"
    app = services["app"]
    assert app["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    # The demo trusts X-User-Id: reachable from this machine only.
    assert app["ports"] == ["127.0.0.1:8000:8000"]
    assert app["environment"]["PORT"] == "8000"
    assert seconds(app["stop_grace_period"]) > SHUTDOWN_BOUND
    # One service builds the image the other runs.
    assert app["build"] == "."
    assert "build" not in services["migrate"] and services["migrate"]["pull_policy"] == "never"
    assert services["migrate"]["image"] == app["image"]
    for name in ("migrate", "app"):
        environment = services[name]["environment"]
        assert services[name]["env_file"] == [{"path": ".env", "required": False}]
        # The app's development defaults decide the model and identity, so that a key in .env
        # switches the fake model off.
        assert "MODEL_PROVIDER" not in environment and "AUTH_TRUST_USER_HEADERS" not in environment
        assert environment["DATABASE_URL"].startswith("postgresql://")
        networks = environment["AUTH_HEADERS_ALLOWED_NETWORKS"].split(":-", 1)[1].rstrip("}")
        settings = Settings(_env_file=None, auth_headers_allowed_networks=networks)
        assert settings.auth_headers_allowed_networks  # valid CIDRs


def test_the_deploy_guide_shows_the_image_command_as_the_dockerfile_has_it() -> None:
    guide = (PROJECT_ROOT / "docs" / "deploy.md").read_text()
    snippet = re.search(r"The image's command is:\n\n```sh\n(.*?)\n```", guide, re.DOTALL)
    assert snippet, "docs/deploy.md no longer shows the image's command"
    shown = " ".join(snippet.group(1).replace("\\\n", " ").split())
    assert shown == " ".join(read_runtime_image().cmd[2].split())
