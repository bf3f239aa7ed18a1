"""The store contract, run against PostgreSQL and SQLite (the `database_url` fixture)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta

import pytest
from chatkit.store import NotFoundError, StoreItemType
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    CustomTask,
    FileAttachment,
    Page,
    Thread,
    ThreadItem,
    ThreadMetadata,
    Workflow,
    WorkflowItem,
)
from sqlalchemy import event, func, select

from app.context import RequestContext
from app.store.models import AttachmentRow, ItemRow
from app.store.store import SQLAlchemyStore, new_id
from tests.helpers.items import BASE_TIME, every_item_type


def make_thread(store: SQLAlchemyStore, user: RequestContext, **extra: object) -> ThreadMetadata:
    return ThreadMetadata(id=store.generate_thread_id(user), created_at=datetime.now(), **extra)


def message(thread_id: str, created_at: datetime, text: str = "hi") -> AssistantMessageItem:
    return AssistantMessageItem(
        id=new_id("message"),
        thread_id=thread_id,
        created_at=created_at,
        content=[AssistantMessageContent(text=text)],
    )


async def saved_thread(store: SQLAlchemyStore, user: RequestContext) -> ThreadMetadata:
    thread = make_thread(store, user)
    await store.save_thread(thread, user)
    return thread


async def add_messages(
    store: SQLAlchemyStore, user: RequestContext, thread_id: str, count: int
) -> list[ThreadItem]:
    items: list[ThreadItem] = []
    for n in range(count):
        item = message(thread_id, BASE_TIME + timedelta(seconds=n), f"m{n}")
        await store.add_thread_item(thread_id, item, user)
        items.append(item)
    return items


async def all_pages(
    store: SQLAlchemyStore, user: RequestContext, thread_id: str, limit: int, order: str
) -> list[Page[ThreadItem]]:
    pages, after = [], None
    while True:
        page = await store.load_thread_items(thread_id, after, limit, order, user)
        pages.append(page)
        if not page.has_more:
            return pages
        assert page.after == page.data[-1].id
        after = page.after


# ids


def test_ids_keep_sdk_prefixes_and_have_128_random_bits(store: SQLAlchemyStore, user) -> None:
    thread = make_thread(store, user)
    assert re.fullmatch(r"thr_[0-9a-f]{44}", thread.id)
    kinds: list[tuple[StoreItemType, str]] = [
        ("message", "msg"),
        ("tool_call", "tc"),
        ("workflow", "wf"),
        ("task", "tsk"),
        ("attachment", "atc"),
        ("sdk_hidden_context", "shcx"),
    ]
    for kind, prefix in kinds:
        assert re.fullmatch(rf"{prefix}_[0-9a-f]{{44}}", store.generate_item_id(kind, thread, user))
    ids = [new_id("message") for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    # 12 hex chars of milliseconds then 32 random hex chars: ordered by time across milliseconds.
    assert ids[0][4:16] <= ids[-1][4:16]


# threads


async def test_thread_round_trip_and_update(store: SQLAlchemyStore, user) -> None:
    thread = make_thread(store, user, title="First", metadata={"k": [1, None]})
    await store.save_thread(thread, user)
    assert await store.load_thread(thread.id, user) == thread

    thread.title = "Renamed"
    await store.save_thread(thread, user)
    assert (await store.load_thread(thread.id, user)).title == "Renamed"


async def test_save_thread_with_items_stores_only_metadata(store: SQLAlchemyStore, user) -> None:
    meta = make_thread(store, user)
    full = Thread(**meta.model_dump(), items=Page(data=[message(meta.id, BASE_TIME)]))
    await store.save_thread(full, user)
    assert await store.load_thread(meta.id, user) == meta
    assert (await store.load_thread_items(meta.id, None, 10, "asc", user)).data == []


async def test_load_missing_thread(store: SQLAlchemyStore, user) -> None:
    with pytest.raises(NotFoundError, match="^Thread thr_nope not found$"):
        await store.load_thread("thr_nope", user)


async def test_threads_paginate_both_orders(store: SQLAlchemyStore, user) -> None:
    threads = []
    for n in range(5):
        thread = ThreadMetadata(id=new_id("thread"), created_at=BASE_TIME + timedelta(minutes=n))
        await store.save_thread(thread, user)
        threads.append(thread)

    first = await store.load_threads(2, None, "asc", user)
    assert [t.id for t in first.data] == [t.id for t in threads[:2]]
    assert first.has_more and first.after == threads[1].id
    second = await store.load_threads(2, first.after, "asc", user)
    assert [t.id for t in second.data] == [t.id for t in threads[2:4]]
    last = await store.load_threads(2, second.after, "asc", user)
    assert [t.id for t in last.data] == [threads[4].id]
    assert not last.has_more and last.after is None

    desc = await store.load_threads(3, None, "desc", user)
    assert [t.id for t in desc.data] == [t.id for t in reversed(threads[2:])]
    rest = await store.load_threads(3, desc.after, "desc", user)
    assert [t.id for t in rest.data] == [t.id for t in reversed(threads[:2])]
    assert not rest.has_more

    exact = await store.load_threads(5, None, "asc", user)
    assert len(exact.data) == 5 and not exact.has_more and exact.after is None


async def test_no_threads_is_an_empty_page(store: SQLAlchemyStore, user) -> None:
    assert await store.load_threads(10, None, "desc", user) == Page(data=[], has_more=False)


async def test_delete_thread_cascades(store: SQLAlchemyStore, user) -> None:
    thread = await saved_thread(store, user)
    await add_messages(store, user, thread.id, 3)
    attachment = FileAttachment(
        id=new_id("attachment"), name="f.txt", mime_type="text/plain", thread_id=thread.id
    )
    await store.save_attachment(attachment, user)

    await store.delete_thread(thread.id, user)

    with pytest.raises(NotFoundError):
        await store.load_thread(thread.id, user)
    with pytest.raises(NotFoundError):
        await store.load_attachment(attachment.id, user)
    async with store.engine.connect() as conn:
        left = await conn.scalar(
            select(func.count()).select_from(ItemRow).where(ItemRow.thread_id == thread.id)
        )
    assert left == 0


async def test_delete_missing_thread(store: SQLAlchemyStore, user) -> None:
    with pytest.raises(NotFoundError):
        await store.delete_thread("thr_missing", user)


# items


async def test_every_item_type_round_trips_exactly(store: SQLAlchemyStore, user) -> None:
    thread = await saved_thread(store, user)
    items = every_item_type(thread.id)
    for item in items:
        await store.add_thread_item(thread.id, item, user)

    for item in items:
        loaded = await store.load_item(thread.id, item.id, user)
        assert loaded == item
        assert type(loaded) is type(item)
        assert (loaded.created_at.tzinfo is None) == (item.created_at.tzinfo is None)

    page = await store.load_thread_items(thread.id, None, 50, "asc", user)
    assert page.data == items


async def test_items_order_by_their_own_created_at(store: SQLAlchemyStore, user) -> None:
    thread = await saved_thread(store, user)
    late = message(thread.id, BASE_TIME + timedelta(hours=1), "late")
    early = message(thread.id, BASE_TIME, "early")
    same_a = message(thread.id, BASE_TIME + timedelta(minutes=1), "a")
    same_b = message(thread.id, BASE_TIME + timedelta(minutes=1), "b")
    for item in (late, same_b, early, same_a):  # inserted out of order
        await store.add_thread_item(thread.id, item, user)

    page = await store.load_thread_items(thread.id, None, 10, "asc", user)
    tied = sorted([same_a, same_b], key=lambda item: item.id)
    assert [i.id for i in page.data] == [early.id, *[i.id for i in tied], late.id]


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 3, 7, 8])
async def test_items_paginate_across_pages(store: SQLAlchemyStore, user, order, limit) -> None:
    thread = await saved_thread(store, user)
    items = await add_messages(store, user, thread.id, 7)
    expected = [i.id for i in (items if order == "asc" else reversed(items))]

    pages = await all_pages(store, user, thread.id, limit, order)

    assert [i.id for page in pages for i in page.data] == expected
    assert all(len(page.data) == limit for page in pages[:-1])
    assert not pages[-1].has_more and pages[-1].after is None


async def test_after_the_last_item_is_an_empty_page(store: SQLAlchemyStore, user) -> None:
    thread = await saved_thread(store, user)
    items = await add_messages(store, user, thread.id, 3)
    page = await store.load_thread_items(thread.id, items[-1].id, 10, "asc", user)
    assert page == Page(data=[], has_more=False, after=None)
    page = await store.load_thread_items(thread.id, items[0].id, 10, "desc", user)
    assert page.data == [] and not page.has_more


async def test_empty_thread_and_unknown_cursor(store: SQLAlchemyStore, user) -> None:
    thread = await saved_thread(store, user)
    assert await store.load_thread_items(thread.id, None, 10, "asc", user) == Page()
    await add_messages(store, user, thread.id, 2)
    page = await store.load_thread_items(thread.id, "msg_unknown", 10, "asc", user)
    assert page.data == []


async def test_page_size_is_bounded(store: SQLAlchemyStore, user) -> None:
    thread = await saved_thread(store, user)
    await add_messages(store, user, thread.id, 3)
    huge = await store.load_thread_items(thread.id, None, 10**9, "asc", user)
    assert len(huge.data) == 3
    zero = await store.load_thread_items(thread.id, None, 0, "asc", user)
    assert len(zero.data) == 1 and zero.has_more  # never unbounded, never negative


async def test_save_item_upserts_in_place(store: SQLAlchemyStore, user) -> None:
    thread = await saved_thread(store, user)
    first, second = await add_messages(store, user, thread.id, 2)

    edited = first.model_copy(update={"content": [AssistantMessageContent(text="edited")]})
    await store.save_item(thread.id, edited, user)

    page = await store.load_thread_items(thread.id, None, 10, "asc", user)
    assert [i.id for i in page.data] == [first.id, second.id]
    assert page.data[0] == edited

    fresh = message(thread.id, BASE_TIME + timedelta(days=1))
    await store.save_item(thread.id, fresh, user)  # save_item of a new id inserts
    assert await store.load_item(thread.id, fresh.id, user) == fresh


async def test_the_newest_items_a_turn_read_answer_the_next_read_once(
    store: SQLAlchemyStore, user, other_user, engine
) -> None:
    """The SDK reads a thread's two newest items right after the turn loaded its history."""
    thread = await saved_thread(store, user)
    items = await add_messages(store, user, thread.id, 3)
    newest_first = items[::-1]
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    async def newest(context: RequestContext, limit: int = 2) -> tuple[list[str], bool, int]:
        before = len(statements)
        page = await store.load_thread_items(thread.id, None, limit, "desc", context)
        return [item.id for item in page.data], page.has_more, len(statements) - before

    async def scenario() -> None:
        ids = [item.id for item in newest_first]
        store.remember_newest(thread.id, newest_first, True, user)
        assert await newest(user) == (ids[:2], True, 0)  # from memory
        assert await newest(user) == (ids[:2], True, 1)  # once only
        store.remember_newest(thread.id, newest_first, True, user)
        assert await newest(user, limit=5) == (ids, False, 0)  # all there are
        # `Page.after` as the database gives it: the last id returned, empty with no more.
        for limit, after in ((2, ids[1]), (3, None)):
            store.remember_newest(thread.id, newest_first, True, user)
            page = await store.load_thread_items(thread.id, None, limit, "desc", user)
            assert page.after == after
        store.remember_newest(thread.id, newest_first[:2], False, user)
        assert await newest(user, limit=3) == (ids, False, 1)  # more than it knows
        store.remember_newest(thread.id, newest_first, True, user)
        later = message(thread.id, BASE_TIME + timedelta(minutes=5), "later")
        await store.add_thread_item(thread.id, later, user)  # a write: forgotten
        assert await newest(user) == ([later.id, ids[0]], True, 1)
        store.remember_newest(thread.id, newest_first, True, user)
        await store.delete_thread_item(thread.id, later.id, user)  # a delete: forgotten too
        assert await newest(user) == (ids[:2], True, 1)
        other_thread = await saved_thread(store, user)
        store.remember_newest(thread.id, newest_first, True, user)
        page = await store.load_thread_items(other_thread.id, None, 2, "desc", user)
        assert page.data == []  # the same user's other thread: read from the database
        store.remember_newest(thread.id, newest_first, True, user)
        with pytest.raises(NotFoundError):  # another user's read is never answered from it
            await store.load_thread(thread.id, other_user)
        page = await store.load_thread_items(thread.id, None, 2, "desc", other_user)
        assert page.data == []

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        await asyncio.create_task(scenario())  # its own context, as a request's task has
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_the_thread_a_turn_read_answers_the_next_read_once(
    store: SQLAlchemyStore, user, other_user, engine
) -> None:
    """A turn reads its thread as it takes the lock; the SDK's read that follows is answered
    from it, once, and never for another thread or user, nor after the thread was written."""
    thread = await saved_thread(store, user)
    reads: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "FROM threads" in statement and statement.lstrip().startswith("SELECT"):
            reads.append(statement)

    async def read(context: RequestContext, thread_id: str = thread.id) -> int:
        before = len(reads)
        await store.load_thread(thread_id, context)
        return len(reads) - before

    async def scenario() -> None:
        known = await store.load_thread(thread.id, user)
        store.remember_thread(known, user)
        assert await read(user) == 0  # from memory
        assert await read(user) == 1  # once only
        store.remember_thread(known, user)
        known.title = "Renamed"
        await store.save_thread(known, user)  # a write: forgotten
        assert await read(user) == 1
        other_thread = await saved_thread(store, user)
        store.remember_thread(known, user)
        assert await read(user, other_thread.id) == 1  # another thread: from the database
        store.remember_thread(known, user)
        with pytest.raises(NotFoundError):  # another user's read is never answered from it
            await store.load_thread(thread.id, other_user)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        await asyncio.create_task(scenario())  # its own context, as a request's task has
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_add_thread_item_continues_a_stored_workflow(store: SQLAlchemyStore, user) -> None:
    """`stream_agent_response` re-adds a workflow it continues, with the same id."""
    thread = await saved_thread(store, user)
    workflow = WorkflowItem(
        id=new_id("workflow"),
        thread_id=thread.id,
        created_at=BASE_TIME,
        workflow=Workflow(type="custom", tasks=[CustomTask(title="one")]),
    )
    await store.add_thread_item(thread.id, workflow, user)
    after = message(thread.id, BASE_TIME + timedelta(seconds=1))
    await store.add_thread_item(thread.id, after, user)

    continued = workflow.model_copy(deep=True)
    continued.workflow.tasks.append(CustomTask(title="two"))
    await store.add_thread_item(thread.id, continued, user)

    page = await store.load_thread_items(thread.id, None, 10, "asc", user)
    assert [i.id for i in page.data] == [workflow.id, after.id]
    assert page.data[0] == continued


async def test_load_and_delete_missing_items(store: SQLAlchemyStore, user) -> None:
    thread = await saved_thread(store, user)
    with pytest.raises(NotFoundError):
        await store.load_item(thread.id, "msg_missing", user)
    await store.delete_thread_item(thread.id, "msg_missing", user)  # a no-op


async def test_delete_item(store: SQLAlchemyStore, user) -> None:
    thread = await saved_thread(store, user)
    first, second = await add_messages(store, user, thread.id, 2)
    await store.delete_thread_item(thread.id, first.id, user)
    assert (await store.load_thread_items(thread.id, None, 10, "asc", user)).data == [second]


async def test_item_in_missing_thread_is_refused(store: SQLAlchemyStore, user) -> None:
    with pytest.raises(NotFoundError):
        await store.add_thread_item("thr_missing", message("thr_missing", BASE_TIME), user)
    assert await store.load_thread_items("thr_missing", None, 10, "asc", user) == Page()


# attachments


async def test_attachment_round_trip_upsert_delete(store: SQLAlchemyStore, user) -> None:
    attachment = FileAttachment(
        id=new_id("attachment"), name="f.txt", mime_type="text/plain", metadata={"key": "k"}
    )
    await store.save_attachment(attachment, user)
    assert await store.load_attachment(attachment.id, user) == attachment

    attached = attachment.model_copy(update={"thread_id": "thr_x"})
    await store.save_attachment(attached, user)
    assert await store.load_attachment(attachment.id, user) == attached

    await store.delete_attachment(attachment.id, user)
    with pytest.raises(NotFoundError):
        await store.load_attachment(attachment.id, user)
    await store.delete_attachment(attachment.id, user)  # unknown: a no-op


# isolation


async def test_another_user_cannot_touch_threads(store: SQLAlchemyStore, user, other_user) -> None:
    thread = make_thread(store, user, title="mine")
    await store.save_thread(thread, user)
    items = await add_messages(store, user, thread.id, 2)

    with pytest.raises(NotFoundError, match=f"^Thread {thread.id} not found$"):
        await store.load_thread(thread.id, other_user)
    assert (await store.load_threads(10, None, "desc", other_user)).data == []
    with pytest.raises(NotFoundError):
        await store.save_thread(thread.model_copy(update={"title": "stolen"}), other_user)
    with pytest.raises(NotFoundError):
        await store.delete_thread(thread.id, other_user)

    assert await store.load_thread_items(thread.id, None, 10, "asc", other_user) == Page()
    with pytest.raises(NotFoundError):
        await store.load_item(thread.id, items[0].id, other_user)
    with pytest.raises(NotFoundError):
        await store.add_thread_item(thread.id, message(thread.id, BASE_TIME), other_user)
    with pytest.raises(NotFoundError):
        await store.save_item(thread.id, items[0].model_copy(update={"content": []}), other_user)
    await store.delete_thread_item(thread.id, items[0].id, other_user)

    # The owner's data is untouched.
    assert (await store.load_thread(thread.id, user)).title == "mine"
    assert (await store.load_thread_items(thread.id, None, 10, "asc", user)).data == items


async def test_another_user_cannot_reach_items_through_their_own_thread(
    store: SQLAlchemyStore, user, other_user
) -> None:
    mine = await saved_thread(store, user)
    (item,) = await add_messages(store, user, mine.id, 1)
    theirs = await saved_thread(store, other_user)

    # Upserting my item's id into their own thread must not move or overwrite it.
    with pytest.raises(NotFoundError):
        await store.save_item(
            theirs.id, item.model_copy(update={"thread_id": theirs.id}), other_user
        )
    with pytest.raises(NotFoundError):
        await store.load_item(theirs.id, item.id, other_user)
    page = await store.load_thread_items(theirs.id, item.id, 10, "asc", other_user)
    assert page.data == []
    assert await store.load_item(mine.id, item.id, user) == item


async def test_another_user_cannot_touch_attachments(
    store: SQLAlchemyStore, user, other_user
) -> None:
    attachment = FileAttachment(id=new_id("attachment"), name="a", mime_type="text/plain")
    await store.save_attachment(attachment, user)

    with pytest.raises(NotFoundError):
        await store.load_attachment(attachment.id, other_user)
    with pytest.raises(NotFoundError):
        await store.save_attachment(attachment.model_copy(update={"name": "x"}), other_user)
    await store.delete_attachment(attachment.id, other_user)

    assert await store.load_attachment(attachment.id, user) == attachment
    async with store.engine.connect() as conn:
        owners = (
            await conn.scalars(
                select(AttachmentRow.user_id).where(AttachmentRow.id == attachment.id)
            )
        ).all()
    assert owners == [user.user_id]
