"""Usage counters: one atomic upsert-increment per check, so several processes share each limit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.models import UsageCounterRow


class UsageCounters:
    """Fixed-window counters keyed by user, bucket (`requests`, `messages`) and window start."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert

    async def increment(
        self, user_id: str, bucket: str, window_start: datetime, expires_at: datetime
    ) -> int:
        """Add one and return the new count, in one statement (no read-then-write race).

        The first hit of a new window also drops the user's expired windows, so the table stays
        proportional to active users.
        """
        stmt = self._insert(UsageCounterRow).values(
            user_id=user_id,
            bucket=bucket,
            window_start=window_start,
            count=1,
            expires_at=expires_at,
        )
        upsert = stmt.on_conflict_do_update(
            index_elements=[
                UsageCounterRow.user_id,
                UsageCounterRow.bucket,
                UsageCounterRow.window_start,
            ],
            set_={"count": UsageCounterRow.count + 1},
        ).returning(UsageCounterRow.count)
        async with self.engine.begin() as conn:
            count: int = (await conn.execute(upsert)).scalar_one()
        if count == 1:  # its own transaction: the increment never waits on the cleanup
            async with self.engine.begin() as conn:
                await conn.execute(
                    delete(UsageCounterRow).where(
                        UsageCounterRow.user_id == user_id,
                        UsageCounterRow.expires_at <= window_start,
                    )
                )
        return count
