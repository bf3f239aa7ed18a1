"""A serving process (`app.main:app`, as uvicorn loads it) tunes the garbage collector; a
process that only builds the app (the tests, the CLIs) keeps CPython's defaults."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from app.runtime import GC_THRESHOLDS

PROBE = """
import gc, json
before = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
from app.main import create_app
create_app()
built = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
import app.main
app.main.app
served = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
print(json.dumps([before, built, served]))
"""


def test_the_served_app_freezes_startup_objects_and_collects_less_often(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    before, built, served = json.loads(out.stdout.strip().splitlines()[-1])
    assert built == before and before["frozen"] == 0
    assert tuple(served["threshold"]) == GC_THRESHOLDS
    assert served["frozen"] > 10_000
