"""What the database holds after a load, against what the streams acknowledged."""

from __future__ import annotations

import asyncpg
from sqlalchemy.engine import make_url

from bench.load import LoadResult


async def stored_counts(database_url: str, thread_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per thread, how many items of each type are stored."""
    url = make_url(database_url)
    conn = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database=url.database
    )
    try:
        rows = await conn.fetch(
            "SELECT thread_id, type, count(*) AS n FROM thread_items"
            " WHERE thread_id = ANY($1::varchar[]) GROUP BY thread_id, type",
            thread_ids,
        )
    finally:
        await conn.close()
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["thread_id"], {})[row["type"]] = row["n"]
    return counts


async def lost(database_url: str, result: LoadResult) -> int:
    """Assistant messages a stream announced as done that are not in the database."""
    stored = await stored_counts(database_url, list(result.acknowledged))
    return sum(
        max(0, done - stored.get(thread, {}).get("assistant_message", 0))
        for thread, done in result.acknowledged.items()
    )
