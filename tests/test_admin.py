"""`python -m app.admin`: its help, and each command against a database with two users."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from uuid import uuid4

import pytest

from app.admin import parse_args, run
from app.store.db import PROJECT_ROOT
from tests.helpers.chatkit import create_thread_req, created_thread_id, stream

APP_SETTINGS = {"usage_prices": "fake=0/0/1000000"}  # a unit per output token


def test_help_lists_the_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.admin", "--help"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("usage", "export", "erase", "list-users"):
        assert command in done.stdout


def test_erase_needs_yes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["erase", "someone"])
    assert exit_.value.code == 2
    assert "--yes" in capsys.readouterr().err


def test_a_month_must_look_like_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["usage", "--month", "2026-13"])
    assert "expected a month like 2026-11" in capsys.readouterr().err


async def admin(services, *argv: str) -> str:
    out = io.StringIO()
    assert await run(parse_args(argv), services.settings, out) == 0
    return out.getvalue()


@pytest.mark.usefixtures("fake_model")
async def test_usage_list_export_and_erase(client, services, tmp_path: Path) -> None:
    user, other = f"admin-{uuid4().hex[:8]}", f"admin-{uuid4().hex[:8]}"
    thread_id = created_thread_id(await stream(client, user, create_thread_req("Hello")))
    await stream(client, other, create_thread_req("Hi"))
    words = services.settings.fake_model_tokens

    listed = await admin(services, "list-users")
    assert f"{user}\t" in listed and f"{other}\t" in listed

    report = json.loads(await admin(services, "usage", "--json"))
    mine = [row for row in report["rows"] if row["user_id"] == user]
    assert [(row["model"], row["turns"], row["output_tokens"]) for row in mine] == [
        ("fake", 1, words)
    ]
    assert mine[0]["cost"] == pytest.approx(words)
    table = await admin(services, "usage")
    assert user in table and "cost" in table
    assert "users," in await admin(services, "usage", "--month", "2001-01")

    path = tmp_path / "out.zip"
    assert str(path) in await admin(services, "export", user, "-o", str(path))
    with zipfile.ZipFile(path) as archive:
        assert f"threads/{thread_id}.json" in archive.namelist()

    erased = json.loads(await admin(services, "erase", user, "--yes"))
    assert erased["user_id"] == user and erased["erased"]["threads"] == 1
    listed = await admin(services, "list-users")
    assert f"{user}\t" not in listed and f"{other}\t" in listed
