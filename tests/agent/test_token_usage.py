"""Token usage: each turn's row holds what the model reported, its title call included.

Against `FakeOpenAI` (the OpenAI client and the Agents SDK's models over HTTP, both APIs) and
the scripted fake model; PostgreSQL and SQLite.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.agent.fake_model import FakeModel, FakeToolCall, FakeTurn
from app.store.models import TokenUsageRow
from tests.agent.test_openai_provider import provider_app
from tests.conftest import make_settings
from tests.helpers.agent import MODEL_TITLES
from tests.helpers.apps import running_app
from tests.helpers.chatkit import (
    add_message_req,
    create_thread_req,
    created_thread_id,
    error_events,
    stream,
)
from tests.helpers.fake_openai import INPUT_TOKENS, FakeOpenAI, FakeReply, output_tokens

TITLE = "Greetings exchange"


async def usage_rows(engine: AsyncEngine, user_id: str) -> list[Any]:
    stmt = (
        select(TokenUsageRow)
        .where(TokenUsageRow.user_id == user_id)
        .order_by(TokenUsageRow.created_at, TokenUsageRow.id)
    )
    async with engine.connect() as conn:
        return list((await conn.execute(stmt)).all())


def tokens(row: Any) -> tuple[int, int, int, int]:
    return (row.input_tokens, row.cached_input_tokens, row.output_tokens, row.reasoning_tokens)


async def test_a_turn_records_its_model_calls_and_its_title(database_url, user, model_api):
    """Two model calls (a tool between them) and the title call: one row, their sum."""
    async with (
        FakeOpenAI(title=TITLE, cached_tokens=4, reasoning_tokens=3) as fake,
        provider_app(database_url, fake, model_api, agent_config=MODEL_TITLES) as running,
    ):
        fake.script.extend(
            [FakeReply.call("add_task", text="On it.", title="Milk"), FakeReply("Done.")]
        )
        events = await stream(running.client, user.user_id, create_thread_req("Buy milk"))
        assert error_events(events) == []
        thread_id = created_thread_id(events)
        [row] = await usage_rows(running.services.engine, user.user_id)
        # A later turn: no title call, a row of its own.
        later = await stream(running.client, user.user_id, add_message_req(thread_id, "Thanks"))
        assert error_events(later) == []
        rows = await usage_rows(running.services.engine, user.user_id)

    assert len(fake.received) == 4  # two answer calls and the title, then one answer
    answers = output_tokens("On it.", 1) + output_tokens("Done.")
    title = output_tokens(TITLE)
    assert tokens(row) == (3 * INPUT_TOKENS, 3 * 4, answers + title, 3 * 3)
    assert (row.thread_id, row.model) == (thread_id, "gpt-test")
    user_message = next(
        e["item"]["id"]
        for e in events
        if e["type"] == "thread.item.done" and e["item"]["type"] == "user_message"
    )
    assert row.item_id == user_message
    assert len(rows) == 2
    second = rows[1]
    assert tokens(second) == (INPUT_TOKENS, 4, output_tokens(" ".join(fake.answer_words())), 3)


async def test_the_scripted_model_usage_is_recorded(running, fake_model: FakeModel, user) -> None:
    """The fake model reports a token per word; no title call (it writes no titles)."""
    fake_model.script.push(FakeTurn.say("one two three"), FakeTurn.say("four five"))
    first = await stream(running.client, user.user_id, create_thread_req("Hi"))
    thread_id = created_thread_id(first)
    await stream(running.client, user.user_id, add_message_req(thread_id, "Again"))

    rows = await usage_rows(running.services.engine, user.user_id)
    assert [tokens(row) for row in rows] == [(0, 0, 3, 0), (0, 0, 2, 0)]
    assert {row.model for row in rows} == {"fake"}
    assert {row.thread_id for row in rows} == {thread_id}


async def test_a_failed_turn_records_what_was_spent(running, fake_model: FakeModel, user) -> None:
    """A tool call, then a failed model call: the turn's row holds the first call's tokens."""
    first = FakeTurn(text="Adding it.", tool_calls=[FakeToolCall("add_task", {"title": "Milk"})])
    fake_model.script.push(first, FakeTurn.fail(ConnectionError("model down")))
    events = await stream(running.client, user.user_id, create_thread_req("Buy milk"))
    assert error_events(events)

    [row] = await usage_rows(running.services.engine, user.user_id)
    assert tokens(row) == (0, 0, 2, 0)


async def leave_mid_answer_and_read_usage(running: Any, user_id: str, words: int) -> list[Any]:
    """A tool call, then a `words`-word answer; the client leaves after 10 deltas of it. The
    user's usage rows, once written (polled for up to 10 s)."""
    first = FakeTurn(text="Adding it.", tool_calls=[FakeToolCall("add_task", {"title": "M"})])
    running.fake_model.script.push(first, FakeTurn.say("word " * words))
    body = json.dumps(create_thread_req("Buy milk"))
    headers = {"Content-Type": "application/json", "X-User-Id": user_id}
    deltas = 0
    async with running.client.stream("POST", "/chatkit", content=body, headers=headers) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: ") and '"delta"' in line:
                deltas += 1
                if deltas == 10:  # well into the second answer
                    break
    rows: list[Any] = []
    for _ in range(1000):
        rows = await usage_rows(running.services.engine, user_id)
        if rows:
            break
        await asyncio.sleep(0.01)
    return rows


async def test_a_client_that_leaves_mid_answer_still_counts(database_url, user) -> None:
    """`ON_DISCONNECT=cancel`. The first model call finished (a tool call); the client leaves
    during the second: the row is written by the cancelled turn, with what the first call
    reported."""
    settings = make_settings(database_url, fake_model_delay_ms=2, on_disconnect="cancel")
    async with running_app(settings, socket=True) as running:
        rows = await leave_mid_answer_and_read_usage(running, user.user_id, 5000)

    assert [tokens(row) for row in rows] == [(0, 0, 2, 0)]
    assert not running.fake_model.script.calls[-1].finished


async def test_a_turn_finished_after_the_client_left_counts_whole(database_url, user) -> None:
    """`ON_DISCONNECT=finish` (the default): the client leaves during the second model call, the
    turn runs on in the background, and its one row holds both calls' tokens."""
    settings = make_settings(database_url, fake_model_delay_ms=2)
    async with running_app(settings, socket=True) as running:
        rows = await leave_mid_answer_and_read_usage(running, user.user_id, 300)

    assert [tokens(row) for row in rows] == [(0, 0, 2 + 300, 0)]
    assert running.fake_model.script.calls[-1].finished
