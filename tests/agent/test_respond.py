"""A turn end to end through POST /chatkit: the streamed answer, what is stored, titles, retry."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta

from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadMetadata,
    UserMessageItem,
)
from sqlalchemy import event

from app.agent.fake_model import FakeTurn
from app.context import RequestContext
from app.store.store import THREAD_READ, new_id
from tests.helpers.agent import assistant_texts, stored_items, stored_thread
from tests.helpers.chatkit import (
    add_message_req,
    create_thread_req,
    created_thread_id,
    done_items,
    event_types,
    post,
    retry_req,
    stream,
)
from tests.helpers.items import BASE_TIME

ITEM_ID = re.compile(r"msg_[0-9a-f]{44}")


async def test_plain_answer_streams_token_by_token_and_is_stored(
    client, services, fake_model, user
):
    fake_model.script.push(FakeTurn.say("Hello there, how can I help?"))

    events = await stream(client, user.user_id, create_thread_req("Hi"))

    thread_id = created_thread_id(events)
    deltas = [
        e["update"]["delta"]
        for e in events
        if e["type"] == "thread.item.updated"
        and e["update"]["type"] == "assistant_message.content_part.text_delta"
    ]
    assert deltas == ["Hello ", "there, ", "how ", "can ", "I ", "help?"]
    [answer] = done_items(events, "assistant_message")
    assert answer["content"][0]["text"] == "Hello there, how can I help?"
    # The provider's message id is replaced by one of ours (128 random bits, SDK prefix).
    assert ITEM_ID.fullmatch(answer["id"])
    items = await stored_items(services, user.user_id, thread_id)
    assert [type(item) for item in items] == [UserMessageItem, AssistantMessageItem]
    assert items[1].id == answer["id"]
    assert assistant_texts(items) == ["Hello there, how can I help?"]


async def test_default_fake_reply_has_the_configured_token_count(
    client, services, fake_model, user
):
    events = await stream(client, user.user_id, create_thread_req("ping"))

    [answer] = done_items(events, "assistant_message")
    words = answer["content"][0]["text"].split()
    assert len(words) == services.settings.fake_model_tokens
    assert words[:3] == ["You", "said:", "ping"]
    assert fake_model.script.calls[-1].finished


async def test_history_is_sent_to_the_model_oldest_first(client, fake_model, user):
    fake_model.script.push(FakeTurn.say("first answer"), FakeTurn.say("second answer"))
    events = await stream(client, user.user_id, create_thread_req("first question"))
    await stream(client, user.user_id, add_message_req(created_thread_id(events), "second"))

    sent = fake_model.script.calls[-1].input
    texts = [str(entry.get("content")) for entry in sent]  # type: ignore[union-attr]
    assert len(sent) == 3
    assert "first question" in texts[0]
    assert "first answer" in texts[1] and sent[1]["role"] == "assistant"  # type: ignore[index]
    assert "second" in texts[2]


async def test_history_window_limits_the_items_sent(
    client, services, fake_model, user, monkeypatch
):
    monkeypatch.setattr(services.server.assistant, "history_window", 3)
    events = await stream(client, user.user_id, create_thread_req("one"))
    thread_id = created_thread_id(events)
    await stream(client, user.user_id, add_message_req(thread_id, "two"))
    await stream(client, user.user_id, add_message_req(thread_id, "three"))

    sent = fake_model.script.calls[-1].input
    assert len(sent) == 3
    assert "two" in str(sent[0]["content"])  # type: ignore[index]
    assert "three" in str(sent[-1]["content"])  # type: ignore[index]


async def test_title_is_pushed_in_the_first_exchange_only(client, services, fake_model, user):
    fake_model.script.push(FakeTurn.say("Sure."), FakeTurn.say("Again."))
    events = await stream(
        client, user.user_id, create_thread_req("Plan my week of team offsites in Lisbon please")
    )

    thread_id = created_thread_id(events)
    updates = [e for e in events if e["type"] == "thread.updated"]
    assert [e["thread"]["title"] for e in updates] == ["Plan my week of team offsites…"]
    assert event_types(events).index("thread.updated") > event_types(events).index(
        "thread.item.done"
    )
    assert (await stored_thread(services, user.user_id, thread_id)).title == (
        "Plan my week of team offsites…"
    )

    later = await stream(client, user.user_id, add_message_req(thread_id, "And Porto?"))
    assert "thread.updated" not in event_types(later)


async def test_retry_after_item_replaces_the_answer(client, services, fake_model, user):
    fake_model.script.push(FakeTurn.say("A bad answer"), FakeTurn.say("A better answer"))
    events = await stream(client, user.user_id, create_thread_req("Question"))
    thread_id = created_thread_id(events)
    [question] = done_items(events, "user_message")

    retried = await stream(client, user.user_id, retry_req(thread_id, question["id"]))

    assert [a["content"][0]["text"] for a in done_items(retried, "assistant_message")] == [
        "A better answer"
    ]
    items = await stored_items(services, user.user_id, thread_id)
    assert [item.id for item in items][0] == question["id"]
    assert assistant_texts(items) == ["A better answer"]
    # The model saw the question once, without the discarded answer.
    sent = fake_model.script.calls[-1].input
    assert len(sent) == 1 and "Question" in str(sent[0]["content"])  # type: ignore[index]


async def test_locale_reaches_the_instructions(client, fake_model, user):
    await stream(client, user.user_id, create_thread_req("Hola"), **{"Accept-Language": "es-ES"})

    instructions = fake_model.script.calls[-1].instructions or ""
    assert "es-ES" in instructions


async def test_concurrent_turns_stay_in_their_own_threads(client, services):
    users = [f"user-concurrent-{n}" for n in range(6)]

    results = await asyncio.gather(
        *(
            stream(client, user_id, create_thread_req(f"message from {user_id}"))
            for user_id in users
        )
    )

    for user_id, events in zip(users, results, strict=True):
        [answer] = done_items(events, "assistant_message")
        assert answer["content"][0]["text"].startswith(f"You said: message from {user_id} ")
        items = await stored_items(services, user_id, created_thread_id(events))
        assert assistant_texts(items) == [answer["content"][0]["text"]]


async def test_history_window_larger_than_a_store_page(services, user, monkeypatch):
    store = services.store
    thread = ThreadMetadata(id=store.generate_thread_id(user), created_at=datetime.now())
    await store.save_thread(thread, user)
    for n in range(120):
        item = AssistantMessageItem(
            id=new_id("message"),
            thread_id=thread.id,
            created_at=BASE_TIME + timedelta(seconds=n),
            content=[AssistantMessageContent(text=f"m{n}")],
        )
        await store.add_thread_item(thread.id, item, user)
    monkeypatch.setattr(services.server.assistant, "history_window", 110)

    newest_first, complete = await services.server._newest_items(thread, user)

    assert assistant_texts(newest_first[::-1]) == [f"m{n}" for n in range(10, 120)]
    assert not complete
    monkeypatch.setattr(services.server.assistant, "history_window", 120)
    newest_first, complete = await services.server._newest_items(thread, user)
    assert len(newest_first) == 120
    assert complete


async def test_a_turn_reads_its_thread_items_once(client, services, user):
    """The SDK's read of the two newest items is answered from the history the turn loaded."""
    events = await stream(client, user.user_id, create_thread_req("Hi"))
    thread_id = created_thread_id(events)
    reads: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().startswith("SELECT") and "FROM thread_items" in statement:
            reads.append(statement)

    engine = services.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        events = await stream(client, user.user_id, add_message_req(thread_id, "Again"))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert done_items(events, "assistant_message")
    assert len(reads) == 1
    assert len(await stored_items(services, user.user_id, thread_id)) == 4


async def test_a_thread_read_that_fails_after_the_lock_was_taken_lets_the_lock_go(
    client, services, user, monkeypatch
):
    """The lock and the thread are read at once; if the read fails (an outage, 503), the lock
    taken alongside is released, or the thread would be busy until its lease ran out."""
    events = await stream(client, user.user_id, create_thread_req("Hi"))
    thread_id = created_thread_id(events)
    real_read = services.store.load_thread_and_holder

    async def unreachable(*_: object) -> None:
        raise ConnectionRefusedError("the database is unreachable")

    monkeypatch.setattr(services.store, "load_thread_and_holder", unreachable)
    response = await post(client, user.user_id, add_message_req(thread_id, "Again"))
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "database_unavailable"

    monkeypatch.setattr(services.store, "load_thread_and_holder", real_read)
    response = await post(client, user.user_id, add_message_req(thread_id, "Again"))
    assert response.status_code == 200, response.text  # not 409: the lock went


async def test_a_thread_read_under_another_turns_lock_is_read_again(
    client, services, user, monkeypatch
):
    """The previous turn may write its thread and let go between this turn's read and its
    lock: that read is not handed to the SDK, which reads the thread again and sees the write
    (here, a title: a stale copy without it would title the thread over it)."""
    thread = ThreadMetadata(id=new_id("thread"), created_at=datetime.now(), title=None)
    await services.store.save_thread(thread, user)
    locks = services.server.locks
    assert await locks.acquire(user.user_id, thread.id, "turn_previous")
    read_done = asyncio.Event()
    real_read, real_acquire = services.store.load_thread_and_holder, locks.acquire

    async def read(thread_id: str, context: RequestContext) -> tuple[ThreadMetadata, str | None]:
        result: tuple[ThreadMetadata, str | None] = await real_read(thread_id, context)
        read_done.set()
        return result

    async def acquire_once_the_previous_turn_let_go(
        user_id: str, thread_id: str, turn_id: str
    ) -> bool:
        await read_done.wait()  # this turn has read the thread under the previous turn's lock
        written = await services.store.load_thread(thread_id, user)
        written.title = "Written by the previous turn"
        await services.store.save_thread(written, user)  # its last write, then it lets go
        assert await locks.release(user_id, thread_id, "turn_previous")
        acquired: bool = await real_acquire(user_id, thread_id, turn_id)
        return acquired

    monkeypatch.setattr(services.store, "load_thread_and_holder", read)
    monkeypatch.setattr(locks, "acquire", acquire_once_the_previous_turn_let_go)
    events = await stream(client, user.user_id, add_message_req(thread.id, "Hello again"))
    assert done_items(events, "assistant_message")
    stored = await stored_thread(services, user.user_id, thread.id)
    assert stored.title == "Written by the previous turn"


async def test_the_thread_a_turn_read_stays_in_the_turns_task(client, user):
    """Remembered in the turn's own task: a caller's task (here, the test's) keeps nothing
    that could answer a later read."""
    events = await stream(client, user.user_id, create_thread_req("Hi"))
    thread_id = created_thread_id(events)
    await stream(client, user.user_id, add_message_req(thread_id, "Again"))
    assert THREAD_READ.get() is None
