"""`python -m app.chat` as a person runs it, in a subprocess against a real server process:
what it prints (the answer on stdout, everything else on stderr), its exit code, and what the
database holds afterwards."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chatkit.types import AssistantMessageItem, UserMessageItem

from app.agent.errors import NOT_CONFIGURED
from app.agent.fake_model import default_reply
from app.chat.client import ChatKitClient
from app.store.db import PROJECT_ROOT
from tests.chat.conftest import (
    DOMAIN_KEY,
    JWT_SECRET,
    Stored,
    run_cli,
    run_command,
)
from tests.conftest import make_settings
from tests.helpers.apps import running_app
from tests.helpers.jwks import better_auth_claims, hmac_token
from tests.helpers.server import ServerProcess, base_environment


def thread_id_from(stderr: str) -> str:
    (line,) = [line for line in stderr.splitlines() if line.startswith("thread: ")]
    return line.removeprefix("thread: ")


async def test_message_mode_prints_the_answer_and_exits(
    chat_url: str, user_id: str, stored: Stored
) -> None:
    done = run_cli("--url", chat_url, "--user", user_id, "--message", "Hello there")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("You said: Hello there lorem")
    thread_id = thread_id_from(done.stderr)
    items = await stored.items(user_id, thread_id)
    assert isinstance(items[-1], AssistantMessageItem)
    assert done.stdout == items[-1].content[0].text + "\n"


def test_the_answer_is_printed_as_it_arrives(chat_url: str, user_id: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "app.chat", "--url", chat_url, "--user", user_id, "-m", "Hi"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=PROJECT_ROOT,
        env=base_environment(),
    )
    assert process.stdout is not None
    first = os.read(process.stdout.fileno(), 65536).decode()  # blocks until the first write
    rest, _ = process.communicate(timeout=60)
    answer = first + rest.decode()
    assert process.returncode == 0
    # The model sends a word every 40 ms: the first write held only the start of the answer.
    assert answer.startswith(first)
    assert 0 < len(first.strip()) < len(answer.strip()) / 2, (first, answer)


async def test_a_continued_thread_an_attachment_and_a_widget(
    chat_url: str, user_id: str, stored: Stored, tmp_path: Path
) -> None:
    first = run_cli("--url", chat_url, "--user", user_id, "-m", "Start")
    thread_id = thread_id_from(first.stderr)
    notes = tmp_path / "shopping list.md"
    notes.write_text("- milk\n")

    done = run_cli(
        "--url", chat_url, "--user", user_id, "--thread", thread_id,
        "--attach", str(notes), "-m", '/add_task {"title": "Buy milk"}',
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[ ] Buy milk\nThe tool answered: ")  # the widget, as text
    assert "Attached shopping list.md (atc_" in done.stderr
    assert "… Adding a task…" in done.stderr  # the tool's progress
    assert thread_id_from(done.stderr) == thread_id
    items = await stored.items(user_id, thread_id)
    messages = [item for item in items if isinstance(item, UserMessageItem)]
    assert [m.content[0].text for m in messages] == ["Start", '/add_task {"title": "Buy milk"}']
    (attachment,) = messages[1].attachments
    assert attachment.name == "shopping list.md"
    assert await stored.content(user_id, attachment.id) == b"- milk\n"


@pytest.mark.skipif(shutil.which("uv") is None, reason="scripts/chat.sh runs uv, not on PATH")
async def test_the_script_runs_the_client_in_the_callers_directory(
    chat_url: str, user_id: str, stored: Stored, tmp_path: Path
) -> None:
    (tmp_path / "note.txt").write_text("relative to where I am\n")
    script = str(PROJECT_ROOT / "scripts" / "chat.sh")
    done = run_command(
        ["bash", script, "--attach", "note.txt", "-m", "Hi"],
        cwd=tmp_path,
        env={"CHATKIT_URL": chat_url, "CHATKIT_USER": user_id},
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("You said: Hi")
    (message, _) = await stored.items(user_id, thread_id_from(done.stderr))
    assert isinstance(message, UserMessageItem)
    assert await stored.content(user_id, message.attachments[0].id) == b"relative to where I am\n"


def test_a_client_tool_call_is_shown_and_answered(chat_url: str, user_id: str) -> None:
    done = run_cli("--url", chat_url, "--user", user_id, "-m", '/switch_theme {"theme": "dark"}')

    assert done.returncode == 0, done.stderr
    assert (
        '⚙ The assistant called switch_theme {"theme": "dark"} here: '
        'answered {"success": true, "theme": "dark"}'
    ) in done.stderr
    assert done.stdout.startswith("The tool answered: {")
    assert '"theme": "dark"' in done.stdout


def test_an_error_event_is_shown_with_its_message_and_exits_non_zero(
    unconfigured_server: ServerProcess, user_id: str
) -> None:
    url = f"{unconfigured_server.base_url}/chatkit"
    refused = run_cli("--url", url, "--user", user_id, "-m", "Hello")
    assert refused.returncode == 1
    assert "Error: HTTP 403 domain_key_required: " in refused.stderr

    done = run_cli("--url", url, "--user", user_id, "-m", "Hello", CHATKIT_DOMAIN_KEY=DOMAIN_KEY)

    assert done.returncode == 1
    assert f"Error: {NOT_CONFIGURED} (retrying will not help)" in done.stderr
    assert done.stdout == ""

    # The daily quota of one message is spent: the server's 429 reason is shown.
    again = run_cli("--url", url, "--user", user_id, "--domain-key", DOMAIN_KEY, "-m", "Again")
    assert again.returncode == 1
    assert "Error: HTTP 429 quota_exceeded: " in again.stderr
    assert "The quota resets at 00:00 UTC" in again.stderr


async def test_a_bearer_token_names_the_user(chat_url: str, user_id: str, stored: Stored) -> None:
    token = hmac_token(JWT_SECRET.encode(), better_auth_claims(user_id, iss=None, aud=None))
    done = run_cli("-m", "Hello", CHATKIT_URL=chat_url, CHATKIT_TOKEN=token)

    assert done.returncode == 0, done.stderr
    assert await stored.thread_ids(user_id) == [thread_id_from(done.stderr)]


def test_no_identity_and_a_bad_token_are_readable_401s(chat_url: str) -> None:
    done = run_cli("--url", chat_url, "-m", "Hello")
    assert done.returncode == 1
    assert "Error: HTTP 401 unauthorized: Authentication required" in done.stderr
    assert "Traceback" not in done.stderr

    forged = hmac_token(b"not-the-server-secret-0123456789abc", better_auth_claims())
    done = run_cli("--url", chat_url, "--token", forged, "-m", "Hello")
    assert done.returncode == 1
    assert "Error: HTTP 401 invalid_token: " in done.stderr


def test_an_unreadable_file_and_an_unreachable_server_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    url = "http://127.0.0.1:9/chatkit"  # nothing listens on the discard port
    done = run_cli("--url", url, "--user", "u", "--attach", str(missing), "-m", "Hello")
    assert done.returncode == 1
    assert f"Error: cannot read {missing}: No such file or directory" in done.stderr

    done = run_cli("--url", url, "--user", "u", "-m", "Hello")
    assert done.returncode == 1
    assert f"Error: Could not reach {url}: ConnectError" in done.stderr


async def test_the_interactive_session(
    chat_url: str, user_id: str, stored: Stored, tmp_path: Path
) -> None:
    """Commands and messages typed in (here piped): list, switch, attach, new, quit."""
    async with ChatKitClient(chat_url, user=user_id) as client:
        for text in ("older", "newer"):
            _ = [event async for event in client.create_thread(text)]
    picture = tmp_path / "dot.txt"
    picture.write_text("a dot\n")
    script = "\n".join(
        [
            "/threads",
            "/switch 2",  # "older"
            f"/attach {picture}",
            "And this file?",
            "/new",
            "A fresh start",
            "/retry",
            "/switch thr_missing",
            "/quit",
            "never sent",
        ]
    )
    done = run_cli("--url", chat_url, "--user", user_id, stdin=script + "\n")

    assert done.returncode == 0, done.stderr
    out, err = done.stdout, done.stderr
    assert out.index("1  newer") < out.index("2  older")
    assert "you: older" in out  # the history /switch printed
    assert "You said: And this file?" in out
    assert "You said: A fresh start" in out
    assert "Attached dot.txt (atc_" in err
    assert "The next message starts a new thread." in err
    assert "Error: Nothing to retry" in err
    assert "Error: HTTP 404 not_found: Thread thr_missing not found" in err

    threads = await stored.thread_ids(user_id)  # newest first
    assert len(threads) == 3
    older = await stored.items(user_id, threads[-1])
    texts = [item.content[0].text for item in older if isinstance(item, UserMessageItem)]
    assert texts == ["older", "And this file?"]
    assert [a.name for a in older[2].attachments] == ["dot.txt"]
    fresh = await stored.items(user_id, threads[0])
    assert [item.content[0].text for item in fresh if isinstance(item, UserMessageItem)] == [
        "A fresh start"
    ]
    assert "never sent" not in out + err


def interrupt_mid_answer(chat_url: str, user_id: str, text: str) -> tuple[int, str]:
    """Type `text` into an interactive session, press Ctrl-C once the answer shows, then /quit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app.chat", "--url", chat_url, "--user", user_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=PROJECT_ROOT,
        env=base_environment(),
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(text.encode() + b"\n")
    process.stdin.flush()
    printed = b""
    while b"You said:" not in printed:  # the answer has begun (a word every 40 ms)
        chunk = os.read(process.stdout.fileno(), 65536)
        assert chunk, "the client exited before answering"
        printed += chunk
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(b"/quit\n", timeout=60)
    return process.returncode, err.decode()


async def test_ctrl_c_stops_the_answer_and_the_session_goes_on(
    chat_database_url: str, user_id: str, stored: Stored
) -> None:
    # An answer of several seconds, so that Ctrl-C lands in it on a busy machine too (the shared
    # server's half-second answers were often over before the signal arrived).
    tokens = 200
    settings = make_settings(chat_database_url, fake_model_tokens=tokens, fake_model_delay_ms=40)
    async with running_app(settings, socket=True) as running:
        url = str(running.client.base_url.join("/chatkit"))
        returncode, err = await asyncio.to_thread(
            interrupt_mid_answer, url, user_id, "Tell me a story"
        )

        assert returncode == 0, err  # /quit was still read after the interruption
        assert "(stopped)" in err
        (thread_id,) = await stored.thread_ids(user_id)
        deadline = time.monotonic() + 20
        while not (answers := await assistant_answers(stored, user_id, thread_id)):
            assert time.monotonic() < deadline, "the partial answer was not saved"
            await asyncio.sleep(0.1)
    (partial,) = answers
    full = default_reply([{"role": "user", "content": "Tell me a story"}], tokens)
    assert full.startswith(partial)
    assert "You said:" in partial and len(partial) < len(full)  # cut short, and kept


async def assistant_answers(stored: Stored, user_id: str, thread_id: str) -> list[str]:
    items = await stored.items(user_id, thread_id)
    return [item.content[0].text for item in items if isinstance(item, AssistantMessageItem)]
