"""The approvals table: every query scoped by user and thread; a decision is written once, and
not at all when applying it fails."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from chatkit.types import ThreadMetadata
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.approvals import (
    Approval,
    ApprovalDecidedError,
    ApprovalNotFoundError,
    ApprovalStore,
    PendingCall,
)
from app.store.store import SQLAlchemyStore

DAY = timedelta(days=1)


async def a_thread(engine: AsyncEngine, user) -> str:
    store = SQLAlchemyStore(engine)
    thread = ThreadMetadata(id=store.generate_thread_id(user), created_at=datetime.now())
    await store.save_thread(thread, user)
    return thread.id


async def an_approval(approvals: ApprovalStore, user_id: str, thread_id: str) -> Approval:
    call = PendingCall("call_1", "delete_task", '{"task_id": "todo_1"}')
    return await approvals.add(
        ApprovalStore.new_id(), user_id, thread_id, "msg_1", [call], '{"state": 1}'
    )


async def echo(approval: Approval) -> str:
    return approval.state


async def test_approvals_are_scoped_by_user_and_thread(engine: AsyncEngine, user, other_user):
    approvals = ApprovalStore(engine)
    thread_id, other_thread = await a_thread(engine, user), await a_thread(engine, user)
    approval = await an_approval(approvals, user.user_id, thread_id)

    for user_id, in_thread in ((other_user.user_id, thread_id), (user.user_id, other_thread)):
        with pytest.raises(ApprovalNotFoundError):
            await approvals.get(user_id, in_thread, approval.id)
        with pytest.raises(ApprovalNotFoundError):
            await approvals.decide(
                user_id, in_thread, approval.id, "approved", max_age=DAY, apply=echo
            )

    stored = await approvals.get(user.user_id, thread_id, approval.id)
    assert (stored.status, stored.calls, stored.state) == (
        "pending",
        approval.calls,
        '{"state": 1}',
    )


async def test_a_decision_is_written_once_and_not_when_applying_it_fails(engine: AsyncEngine, user):
    approvals = ApprovalStore(engine)
    thread_id = await a_thread(engine, user)
    approval = await an_approval(approvals, user.user_id, thread_id)

    async def fail(_: Approval) -> None:
        raise RuntimeError("cannot restore")

    with pytest.raises(RuntimeError):
        await approvals.decide(
            user.user_id, thread_id, approval.id, "approved", max_age=DAY, apply=fail
        )
    assert (await approvals.get(user.user_id, thread_id, approval.id)).status == "pending"

    decided, applied = await approvals.decide(
        user.user_id, thread_id, approval.id, "rejected", max_age=DAY, apply=echo
    )
    assert (decided.status, applied) == ("rejected", '{"state": 1}')
    assert decided.decided_at is not None
    with pytest.raises(ApprovalDecidedError, match="already rejected"):
        await approvals.decide(
            user.user_id, thread_id, approval.id, "approved", max_age=DAY, apply=echo
        )
    stored = await approvals.get(user.user_id, thread_id, approval.id)
    assert (stored.status, stored.decided_at) == ("rejected", decided.decided_at)
