"""The commands around the server say what is wrong, and do nothing when asked for help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.store.db import PROJECT_ROOT
from tests.helpers.server import base_environment


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A command in `cwd` (no checkout's `.env` gets in) with a clean environment."""
    environment = base_environment(PYTHONPATH=str(PROJECT_ROOT), **env)
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_release_step_prints_production_problems_without_a_traceback(tmp_path: Path) -> None:
    """`alembic upgrade head` is the platforms' release step: its log is what people read."""
    done = run(
        ["-m", "alembic", "-c", str(PROJECT_ROOT / "alembic.ini"), "upgrade", "head"],
        tmp_path,
        ENVIRONMENT="production",
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "ENVIRONMENT=production refuses" in done.stderr
    assert "MODEL_PROVIDER=openai needs OPENAI_API_KEY" in done.stderr
    assert not (tmp_path / "chatkit.db").exists()


def test_cleanup_help_prints_help_and_cleans_nothing(tmp_path: Path) -> None:
    done = run(["-m", "app.cleanup", "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m app.cleanup")
    assert "ATTACHMENT_ORPHAN_MAX_AGE_SECONDS" in done.stdout
    assert not (tmp_path / "chatkit.db").exists()  # no database was opened


def test_cleanup_with_bad_settings_names_them_without_a_traceback(tmp_path: Path) -> None:
    done = run(["-m", "app.cleanup"], tmp_path, PORT="not-a-port")
    assert done.returncode == 1
    assert "PORT:" in done.stderr and "Traceback" not in done.stderr
