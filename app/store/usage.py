"""Usage counters for rate limits: atomic upsert-increments, shared by every server process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, update
from sqlalchemy.ext.asyncio import AsyncEngine

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
        row = UsageCounterRow.__table__.c
        self._give_back_stmt = (
            update(UsageCounterRow)
            .where(
                row.user_id == bindparam("p_user_id"),
                row.bucket.in_(bindparam("p_buckets", expanding=True)),
                row.count > 0,
            )
            .values(count=row.count - 1)
        )

    async def hit(self, user_id: str, windows: Sequence[Window]) -> tuple[Window, int] | None:
        """Count one hit in each window, in one statement, each increment atomic.

        Returns the first window, in order, that is now past its limit, with its count; the
        windows after it get their hit back (a request refused per minute does not use up a
        daily message). Until then a concurrent request sees them one higher: only a caller
        already over a limit can notice.
        """
        if not windows:
            return None
        rows = [
            {"user_id": user_id, "bucket": w.bucket, "window_start": w.start, "count": 1}
            for w in windows
        ]
        async with self.engine.connect() as conn:
            # Several rows: one INSERT … VALUES (…), (…) … RETURNING ("insertmanyvalues").
            result = await conn.execute(self._increment_stmt, rows)
            counts: dict[str, int] = {row[0]: row[1] for row in result}  # bucket: count
            for index, window in enumerate(windows):
                if counts[window.bucket] > window.limit:
                    later = [w.bucket for w in windows[index + 1 :]]
                    if later:
                        params = {"p_user_id": user_id, "p_buckets": later}
                        await conn.execute(self._give_back_stmt, params)
                    return window, counts[window.bucket]
        return None


def increment_statement(insert: Any) -> Any:
    """One statement: insert 1, add 1 in the same window, or restart at 1 in a newer one.

    A hit stamped with an older window (a process whose clock lags) counts in the current one.
    Built once: constructing it costs more CPU than running it. Returns each row's bucket and
    count (rows of a multi-row insert come back in no promised order).
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
    ).returning(row.bucket, row.count)
