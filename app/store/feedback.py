"""Feedback on thread items (`items.feedback`), one rating per user and item."""

from __future__ import annotations

import secrets
import time

from chatkit.store import NotFoundError
from chatkit.types import FeedbackKind
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.models import FeedbackRow, ItemRow
from app.store.store import utcnow


def new_feedback_id() -> str:
    """Time-sortable with 128 random bits, like the store's ids."""
    return f"fb_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(16)}"


class FeedbackStore:
    """Saves ratings after proving the items are in one of the caller's threads."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert

    async def save(
        self, user_id: str, thread_id: str, item_ids: list[str], kind: FeedbackKind
    ) -> None:
        """Upsert one row per item; an item outside the caller's thread is a `NotFoundError`."""
        wanted = set(item_ids)
        found_stmt = select(ItemRow.id).where(
            ItemRow.id.in_(wanted), ItemRow.thread_id == thread_id, ItemRow.user_id == user_id
        )
        async with self.engine.begin() as conn:
            found = set((await conn.execute(found_stmt)).scalars())
            missing = sorted(wanted - found)
            if missing:
                raise NotFoundError(f"Item {missing[0]} not found in thread {thread_id}")
            for item_id in sorted(wanted):
                stmt = self._insert(FeedbackRow).values(
                    id=new_feedback_id(),
                    user_id=user_id,
                    thread_id=thread_id,
                    item_id=item_id,
                    kind=kind,
                    created_at=utcnow(),
                )
                stmt = stmt.on_conflict_do_update(
                    index_elements=[FeedbackRow.user_id, FeedbackRow.item_id],
                    set_={"kind": stmt.excluded.kind, "created_at": stmt.excluded.created_at},
                )
                await conn.execute(stmt)

    async def kinds(self, user_id: str, thread_id: str) -> dict[str, str]:
        """The caller's ratings in a thread, by item id."""
        stmt = select(FeedbackRow.item_id, FeedbackRow.kind).where(
            FeedbackRow.user_id == user_id, FeedbackRow.thread_id == thread_id
        )
        async with self.engine.connect() as conn:
            return {row.item_id: row.kind for row in (await conn.execute(stmt)).all()}
