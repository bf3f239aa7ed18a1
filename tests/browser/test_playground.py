"""The playground page in Chromium, against the real server process and PostgreSQL.

What this proves: `GET /playground` loads under its CSP, configures ChatKit as the types say
(`api.url`, `api.fetch`, `two_phase` uploads, start-screen prompts, `onClientTool`, feedback),
and its fetch sends the identity the server accepts. Through that fetch, the stand-in drives real
protocol requests: a streamed `threads.create` read to its end, a two-phase upload (whose POST
carries no identity), a widget action, a client tool that switches the page's theme, and
feedback. The server's rows show who it took the caller to be.

What it cannot prove: that ChatKit's own bundle (on OpenAI's CDN, unreachable here) renders and
behaves the same way. ChatKit's UI is replaced by `chatkit_standin.js`: these tests check the
page's wiring, not ChatKit's UI.
"""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import jwt
from playwright.async_api import BrowserContext, FilePayload, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.models import (
    AttachmentContentRow,
    AttachmentRow,
    FeedbackRow,
    ItemRow,
    TaskRow,
    ThreadRow,
)
from tests.helpers.browser import (
    JWT_SECRET,
    OPTIONS_SUMMARY,
    attach,
    backend,
    chat_of,
    items,
    rows,
    send,
    settle,
    token_endpoint,
    token_for,
    watched_page,
)

NOTES = b"milk, eggs"


async def test_playground_in_development(
    context: BrowserContext, postgres_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    user = f"playground-{uuid4().hex[:8]}"
    with backend(postgres_url, tmp_path, AUTH_TRUST_USER_HEADERS="true") as server:
        watched = await watched_page(context, [server.base_url])
        page, chat = watched.page, chat_of(watched)
        response = await page.goto(f"{server.base_url}/playground")
        assert response is not None and response.status == 200
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]

        # The identity field this server accepts, and the options ChatKit was given.
        await expect(page.locator("#user-field")).to_be_visible()
        await expect(page.locator("#token-field")).to_be_hidden()
        await page.locator("#user-id").fill(user)
        await expect(chat.locator("[data-part=prompts] button")).to_have_count(4)
        options = await chat.evaluate(OPTIONS_SUMMARY)
        assert options == {
            "calls": 1,
            "url": "/chatkit",
            "domainKey": "local-dev",
            "fetch": "function",
            "uploadStrategy": {"type": "two_phase"},
            "theme": {"colorScheme": "light"},
            "prompts": ["Add a task", "Show my tasks", "Who am I?", "Dark theme"],
            "attachments": {
                "enabled": True,
                "maxSize": 20 * 1024 * 1024,
                "maxCount": 10,
                "accept": {"image/*": [], "application/pdf": [], "text/*": []},
            },
            "feedback": True,
            "onClientTool": "function",
        }

        # A start-screen prompt: threads.create, streamed and read to its end.
        await chat.get_by_role("button", name="Who am I?").click()
        await settle(chat)
        first_answer = items(chat, "assistant_message").first
        await expect(first_answer).to_contain_text(user)
        thread_id = await chat.get_attribute("data-thread-id")
        assert [thread.id for thread in await rows(engine, ThreadRow, user_id=user)] == [thread_id]

        # A two-phase upload, then a message that carries it.
        await attach(chat, FilePayload(name="notes.txt", mimeType="text/plain", buffer=NOTES))
        await expect(chat.locator("[data-part=attachments]")).to_have_text("notes.txt")
        await send(chat, "Here is my list")
        await expect(items(chat, "assistant_message").last).to_contain_text(
            "You said: Here is my list"
        )
        [attachment] = await rows(engine, AttachmentRow, user_id=user)
        assert attachment.thread_id == thread_id
        assert attachment.data["upload_descriptor"] is None
        [content] = await rows(engine, AttachmentContentRow, id=attachment.id)
        assert content.data == NOTES

        # The task widget, and its Done button: threads.custom_action handled by the server.
        await send(chat, '/add_task {"title": "Buy milk"}')
        widget = items(chat, "widget").last
        await expect(widget).to_contain_text("[ ] Buy milk")
        await widget.locator("button[data-action='task.complete']").click()
        await settle(chat)
        await expect(widget).to_contain_text("[x] Buy milk")
        await expect(widget.locator("button[data-action='task.reopen']")).to_have_text("Reopen")
        [task] = await rows(engine, TaskRow, user_id=user)
        assert (task.title, task.done) == ("Buy milk", True)

        # A tool that asks first: delete_task stops on an approval card; Approve resumes the run.
        await send(chat, f'/delete_task {{"task_id": "{task.id}"}}')
        await expect(items(chat, "widget").last).to_contain_text(
            "Waiting for your approval: delete_task"
        )
        card_id = await items(chat, "widget").last.get_attribute("data-item-id")
        card = chat.locator(f"li[data-item-id='{card_id}']")
        assert len(await rows(engine, TaskRow, user_id=user)) == 1
        await card.locator("button[data-action='approval.approve']").click()
        await settle(chat)
        await expect(card).to_contain_text("Approved: delete_task")
        await expect(card.locator("button")).to_have_count(0)
        await expect(items(chat, "assistant_message").last).to_contain_text('"deleted"')
        assert await rows(engine, TaskRow, user_id=user) == []
        await expect(items(chat, "widget").last).to_contain_text("No tasks yet.")

        # A client tool: the agent's switch_theme runs in the page through onClientTool.
        await chat.get_by_role("button", name="Dark theme").click()
        await settle(chat)
        await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
        await expect(chat).to_have_attribute("data-color-scheme", "dark")
        await expect(items(chat, "assistant_message").last).to_contain_text("The tool answered")
        calls = [
            item.data
            for item in await rows(engine, ItemRow, thread_id=thread_id, type="client_tool_call")
        ]
        assert [(c["name"], c["status"], c["output"]) for c in calls] == [
            ("switch_theme", "completed", {"theme": "dark"})
        ]

        # Feedback on the first answer.
        await first_answer.locator("button[data-kind=positive]").click()
        await settle(chat)
        answer_id = await first_answer.get_attribute("data-item-id")
        [feedback] = await rows(engine, FeedbackRow, user_id=user)
        assert (feedback.item_id, feedback.kind) == (answer_id, "positive")

        # What left the browser: every /chatkit request named the user, the upload nobody.
        protocol = watched.sent("POST", f"{server.base_url}/chatkit")
        uploads = [r for r in protocol if r.url.split("?")[0].endswith("/upload")]
        assert len(uploads) == 1
        for request in protocol:
            headers = await request.all_headers()
            if request in uploads:
                assert "x-user-id" not in headers and "authorization" not in headers
                assert "sig=" in request.url
            else:
                assert headers["x-user-id"] == user
                assert headers["content-type"] == "application/json"
        assert await watched.problems() == []


async def test_playground_with_tokens(
    context: BrowserContext, postgres_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    """The token endpoint (Better Auth's `/api/auth/token` here) is called with the page's
    cookies and its `{token}` used; a pasted token takes over for a new chat."""
    signed_in, pasted = f"signed-in-{uuid4().hex[:8]}", f"pasted-{uuid4().hex[:8]}"
    token_url = "http://127.0.0.1:9/api/auth/token"  # answered by `endpoint` below
    cookies_sent: list[str | None] = []

    with backend(
        postgres_url,
        tmp_path,
        AUTH_TRUST_USER_HEADERS="false",
        AUTH_JWT_SECRET=JWT_SECRET,
        PLAYGROUND_TOKEN_URL=token_url,
    ) as server:
        await context.add_cookies(
            [{"name": "session", "value": "abc", "domain": "127.0.0.1", "path": "/"}]
        )
        endpoint = token_endpoint(server.base_url, signed_in, cookies_sent)
        watched = await watched_page(context, [server.base_url], routes={token_url: endpoint})
        page, chat = watched.page, chat_of(watched)
        await page.goto(f"{server.base_url}/playground")
        await expect(page.locator("#token-field")).to_be_visible()
        await expect(page.locator("#user-field")).to_be_hidden()

        await chat.get_by_role("button", name="Who am I?").click()
        await settle(chat)
        await expect(items(chat, "assistant_message").last).to_contain_text(signed_in)
        assert len(await rows(engine, ThreadRow, user_id=signed_in)) == 1
        # One token fetch, cross-origin with the page's cookies (credentials: "include").
        assert cookies_sent == ["session=abc"]

        await page.locator("#token").fill(token_for(pasted))
        await page.get_by_role("button", name="New chat as this user").click()
        await send(chat, "/get_current_user")
        await expect(items(chat, "assistant_message").last).to_contain_text(pasted)
        assert len(await rows(engine, ThreadRow, user_id=pasted)) == 1
        assert len(cookies_sent) == 1

        subjects = []
        for request in watched.sent("POST", f"{server.base_url}/chatkit"):
            scheme, token = (await request.all_headers())["authorization"].split(" ")
            subjects.append((scheme, jwt.decode(token, JWT_SECRET, algorithms=["HS256"])["sub"]))
        assert set(subjects) == {("Bearer", signed_in), ("Bearer", pasted)}
        assert await watched.problems() == []


async def test_a_reload_mid_answer_follows_it_to_the_end(
    context: BrowserContext, postgres_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    """The answer goes on after the page reloads (ON_DISCONNECT=finish); the page reopens its
    thread, follows the running turn through the re-attach stream, then fetches the thread."""
    slow = {"FAKE_MODEL_TOKENS": "60", "FAKE_MODEL_DELAY_MS": "50"}  # three seconds of answer
    with backend(postgres_url, tmp_path, AUTH_TRUST_USER_HEADERS="true", **slow) as server:
        watched = await watched_page(context, [server.base_url])
        page, chat = watched.page, chat_of(watched)
        await page.goto(f"{server.base_url}/playground")  # as the default user
        await chat.locator("textarea[name=message]").fill("Tell me a long story")
        await chat.get_by_role("button", name="Send").click()
        await expect(items(chat, "assistant_message")).to_have_count(1)  # it is being written
        thread_id = await chat.get_attribute("data-thread-id")
        assert thread_id

        await page.reload()
        await expect(page.locator("#status")).to_have_text("Answering in the background…")
        await expect(chat).to_have_attribute("data-fetched-updates", "1", timeout=30_000)
        await expect(page.locator("#status")).to_have_text("")

        (stored,) = await rows(engine, ItemRow, thread_id=thread_id, type="assistant_message")
        text = stored.data["content"][0]["text"]
        assert len(text.split()) >= 60  # whole
        shown = items(chat, "assistant_message").locator("span").first
        await expect(shown).to_have_text(text.strip())
    assert watched.blocked == []
