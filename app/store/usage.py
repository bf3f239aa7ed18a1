"""Usage counters for rate limits: atomic upsert-increments, shared by every server process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.store.db import autocommit, upsert_insert
from app.store.models import UsageCounterRow


@dataclass(frozen=True, slots=True)
class Window:
    """A fixed window of one limit: at most `limit` hits in `bucket` since `start`."""

    bucket: str
    start: datetime
    limit: int


class UsageCounters:
    """Fixed-window counters, one row per user and bucket."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = autocommit(engine)
        insert = upsert_insert(engine)
        self._increment_stmt = increment_statement(insert)

    async def hit(self, user_id: str, windows: Sequence[Window]) -> tuple[Window, int] | None:
        """Count one hit in each window, in order, each increment atomic on its own.

        Returns the first window that is now past its limit, with its count; the windows after
        it are not counted (a request refused per minute does not use up a daily message).
        """
        async with self.engine.connect() as conn:
            for window in windows:
                count = await self._increment(conn, user_id, window)
                if count > window.limit:
                    return window, count
        return None

    async def _increment(self, conn: AsyncConnection, user_id: str, window: Window) -> int:
        row = {
            "user_id": user_id,
            "bucket": window.bucket,
            "window_start": window.start,
            "count": 1,
        }
        count: int = (await conn.execute(self._increment_stmt, row)).scalar_one()
        return count


def increment_statement(insert: Any) -> Any:
    """One statement: insert 1, add 1 in the same window, or restart at 1 in a newer one.

    A hit stamped with an older window (a process whose clock lags) counts in the current one.
    Built once: constructing it costs more CPU than running it.
    """
    row = UsageCounterRow.__table__.c
    stmt = insert(UsageCounterRow)
    newer = stmt.excluded.window_start > row.window_start
    return stmt.on_conflict_do_update(
        index_elements=[row.user_id, row.bucket],
        set_={
            "count": case((newer, 1), else_=row.count + 1),
            "window_start": case((newer, stmt.excluded.window_start), else_=row.window_start),
        },
    ).returning(row.count)
