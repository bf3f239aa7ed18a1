"""Runs paused on tool calls that wait for the user: their state and their decision, per user.

A paused run's `RunState` JSON lives here, not in memory, so the decision may arrive after a
restart or at another replica. `decide` changes a pending approval's status exactly once: the
row is locked while the decision is applied (`SELECT ... FOR UPDATE` on PostgreSQL; on SQLite a
first write takes the database's write lock), so a double click or two replicas cannot both
resume the run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.db import random_id, utcnow
from app.store.models import ApprovalRow

APPROVAL_ID_PREFIX = "appr"
Status = Literal["pending", "approved", "rejected"]
Decision = Literal["approved", "rejected"]
T = TypeVar("T")


class ApprovalNotFoundError(LookupError):
    """No approval with that id in that thread belongs to the caller."""


class ApprovalDecidedError(Exception):
    """The approval was decided already: a second decision changes nothing."""

    def __init__(self, status: str) -> None:
        super().__init__(f"This request was already {status}.")
        self.status = status


class ApprovalExpiredError(Exception):
    """The approval is older than `APPROVAL_MAX_AGE_SECONDS`."""


@dataclass(frozen=True, slots=True)
class PendingCall:
    """One tool call that waits: the model's call id, the tool's name, its JSON arguments."""

    call_id: str
    name: str
    arguments: str

    def to_json(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True, slots=True)
class Approval:
    id: str
    user_id: str
    thread_id: str
    item_id: str
    calls: list[PendingCall]
    state: str
    """`RunState.to_json()`, serialized."""
    status: Status
    created_at: datetime
    decided_at: datetime | None


def _approval(row: Any) -> Approval:
    calls = [PendingCall(c["call_id"], c["name"], c["arguments"]) for c in row.calls]
    return Approval(
        row.id,
        row.user_id,
        row.thread_id,
        row.item_id,
        calls,
        row.state,
        row.status,
        row.created_at,
        row.decided_at,
    )


class ApprovalStore:
    """Create, read and decide one user's approvals; every query is scoped by `user_id`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @staticmethod
    def new_id() -> str:
        return random_id(APPROVAL_ID_PREFIX)

    async def add(
        self,
        approval_id: str,
        user_id: str,
        thread_id: str,
        item_id: str,
        calls: list[PendingCall],
        state: str,
    ) -> Approval:
        approval = Approval(
            approval_id, user_id, thread_id, item_id, calls, state, "pending", utcnow(), None
        )
        stmt = insert(ApprovalRow).values(
            user_id=user_id,
            id=approval_id,
            thread_id=thread_id,
            item_id=item_id,
            calls=[call.to_json() for call in calls],
            state=state,
            status="pending",
            created_at=approval.created_at,
            decided_at=None,
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt)
        return approval

    async def get(self, user_id: str, thread_id: str, approval_id: str) -> Approval:
        stmt = select(ApprovalRow).where(
            ApprovalRow.user_id == user_id,
            ApprovalRow.id == approval_id,
            ApprovalRow.thread_id == thread_id,
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            raise ApprovalNotFoundError(approval_id)
        return _approval(row)

    async def decide(
        self,
        user_id: str,
        thread_id: str,
        approval_id: str,
        decision: Decision,
        *,
        max_age: timedelta,
        apply: Callable[[Approval], Awaitable[T]],
    ) -> tuple[Approval, T]:
        """Record `decision` on a pending approval, in one transaction with `apply`.

        `apply` (restoring the run and applying the decision to it) runs while the row is
        locked: if it raises, nothing is written and the approval stays pending.

        Raises:
            ApprovalNotFoundError: not the caller's, not in that thread, or no such approval.
            ApprovalDecidedError: decided already (by this click's twin, say).
            ApprovalExpiredError: older than `max_age`.
        """
        where = (
            ApprovalRow.user_id == user_id,
            ApprovalRow.id == approval_id,
            ApprovalRow.thread_id == thread_id,
        )
        async with self.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                # SQLite has no row locks: take the write lock before reading, or two
                # transactions could both read `pending`.
                await conn.execute(
                    update(ApprovalRow).where(*where).values(status=ApprovalRow.status)
                )
            row = (
                await conn.execute(select(ApprovalRow).where(*where).with_for_update())
            ).one_or_none()
            if row is None:
                raise ApprovalNotFoundError(approval_id)
            approval = _approval(row)
            if approval.status != "pending":
                raise ApprovalDecidedError(approval.status)
            now = utcnow()
            if now - approval.created_at > max_age:
                raise ApprovalExpiredError(approval_id)
            applied = await apply(approval)
            changed = await conn.execute(
                update(ApprovalRow)
                .where(*where, ApprovalRow.status == "pending")
                .values(status=decision, decided_at=now)
            )
            if changed.rowcount != 1:  # cannot happen under the lock; never resume twice
                raise ApprovalDecidedError("decided")
        return replace(approval, status=decision, decided_at=now), applied
