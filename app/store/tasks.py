"""The task list behind the default tools: one user's tasks, every query scoped by `user_id`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict, Unpack

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.db import random_id, utcnow
from app.store.models import TaskRow

MAX_TASKS_LISTED = 200


class TaskNotFoundError(LookupError):
    """No task with that id belongs to the caller (told to the model, which may retry)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"No task with id {task_id!r}. Call list_tasks to see the ids.")


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    title: str
    notes: str | None
    done: bool
    created_at: datetime


class TaskChanges(TypedDict, total=False):
    """What `TaskStore.update` may change."""

    title: str | None
    notes: str | None
    done: bool | None


TASK_ID_PREFIX = "todo"
"""Keeps the user's tasks apart from the SDK's `tsk_` thread items."""


class TaskStore:
    """Create, read, update and delete one user's tasks; each call is one short transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, user_id: str, title: str, notes: str | None = None) -> Task:
        task = Task(random_id(TASK_ID_PREFIX), title, notes, False, utcnow())
        stmt = insert(TaskRow).values(
            id=task.id,
            user_id=user_id,
            title=title,
            notes=notes,
            done=False,
            created_at=task.created_at,
            updated_at=task.created_at,
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt)
        return task

    async def list(self, user_id: str) -> list[Task]:
        stmt = (
            select(TaskRow)
            .where(TaskRow.user_id == user_id)
            .order_by(TaskRow.created_at, TaskRow.id)
            .limit(MAX_TASKS_LISTED)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [Task(r.id, r.title, r.notes, r.done, r.created_at) for r in rows]

    async def get(self, user_id: str, task_id: str) -> Task:
        stmt = select(TaskRow).where(TaskRow.id == task_id, TaskRow.user_id == user_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            raise TaskNotFoundError(task_id)
        return Task(row.id, row.title, row.notes, row.done, row.created_at)

    async def update(self, user_id: str, task_id: str, **changes: Unpack[TaskChanges]) -> Task:
        """Change the given fields; `None` leaves a field as it is."""
        values: dict[str, object] = {"updated_at": utcnow()}
        values.update({name: value for name, value in changes.items() if value is not None})
        stmt = (
            update(TaskRow)
            .where(TaskRow.id == task_id, TaskRow.user_id == user_id)
            .values(**values)
        )
        async with self.engine.begin() as conn:
            result = await conn.execute(stmt)
        if result.rowcount == 0:
            raise TaskNotFoundError(task_id)
        return await self.get(user_id, task_id)

    async def delete(self, user_id: str, task_id: str) -> Task:
        task = await self.get(user_id, task_id)
        stmt = delete(TaskRow).where(TaskRow.id == task_id, TaskRow.user_id == user_id)
        async with self.engine.begin() as conn:
            await conn.execute(stmt)
        return task
