"""Tasks and feedback tables: queries scoped by user, and migrations matching the models."""

from __future__ import annotations

from datetime import datetime

import pytest
from chatkit.store import NotFoundError
from chatkit.types import AssistantMessageContent, AssistantMessageItem, ThreadMetadata
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.feedback import FeedbackStore
from app.store.store import SQLAlchemyStore, new_id
from app.store.tasks import TaskNotFoundError, TaskStore


async def test_tasks_are_scoped_by_user(engine: AsyncEngine, user, other_user) -> None:
    tasks = TaskStore(engine)
    mine = await tasks.add(user.user_id, "Mine", "notes")
    theirs = await tasks.add(other_user.user_id, "Theirs")

    assert [t.id for t in await tasks.list(user.user_id)] == [mine.id]
    for attempt in (
        tasks.get(user.user_id, theirs.id),
        tasks.update(user.user_id, theirs.id, done=True),
        tasks.delete(user.user_id, theirs.id),
    ):
        with pytest.raises(TaskNotFoundError):
            await attempt
    assert (await tasks.get(other_user.user_id, theirs.id)).done is False


async def test_task_update_changes_only_given_fields(engine: AsyncEngine, user) -> None:
    tasks = TaskStore(engine)
    task = await tasks.add(user.user_id, "Title", "Notes")

    updated = await tasks.update(user.user_id, task.id, done=True)

    assert (updated.title, updated.notes, updated.done) == ("Title", "Notes", True)
    assert updated.id.startswith("todo_") and len(updated.id) == len("todo_") + 44


async def test_feedback_needs_an_item_of_the_callers_thread(
    store: SQLAlchemyStore, user, other_user
) -> None:
    thread = ThreadMetadata(id=store.generate_thread_id(user), created_at=datetime.now())
    await store.save_thread(thread, user)
    item = AssistantMessageItem(
        id=new_id("message"),
        thread_id=thread.id,
        created_at=datetime.now(),
        content=[AssistantMessageContent(text="hi")],
    )
    await store.add_thread_item(thread.id, item, user)
    feedback = FeedbackStore(store)

    await feedback.save(user.user_id, thread.id, [item.id], "positive")
    await feedback.save(user.user_id, thread.id, [item.id], "negative")
    with pytest.raises(NotFoundError):
        await feedback.save(other_user.user_id, thread.id, [item.id], "positive")

    assert await feedback.kinds(user.user_id, thread.id) == {item.id: "negative"}
    assert await feedback.kinds(other_user.user_id, thread.id) == {}
