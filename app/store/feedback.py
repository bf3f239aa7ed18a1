"""Feedback on thread items (`items.feedback`), one rating per user and item."""

from __future__ import annotations

from chatkit.types import FeedbackKind
from sqlalchemy import select

from app.store.db import random_id, upsert_insert, utcnow
from app.store.models import FeedbackRow
from app.store.store import SQLAlchemyStore


class FeedbackStore:
    """Saves ratings after the thread store proves the items are in one of the caller's threads."""

    def __init__(self, store: SQLAlchemyStore) -> None:
        self.store = store
        self.engine = store.engine
        self._insert = upsert_insert(store.engine)

    async def save(
        self, user_id: str, thread_id: str, item_ids: list[str], kind: FeedbackKind
    ) -> None:
        """Upsert one row per item; an item outside the caller's thread is a `NotFoundError`."""
        await self.store.check_items(thread_id, item_ids, user_id)
        async with self.engine.begin() as conn:
            for item_id in sorted(set(item_ids)):
                stmt = self._insert(FeedbackRow).values(
                    id=random_id("fb"),
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
