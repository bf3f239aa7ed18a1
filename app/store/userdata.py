"""A user's data on request: everything they own, exported as a zip, or erased.

"Everything" is every row of every table with a `user_id` column (a table added later is
covered without a change here), plus the attachments' bytes in their file storage. Erasing
deletes the rows in one transaction, then the stored objects (S3's are outside it).

The zip (`stream-zip`: built as it is sent, in constant memory, never whole on disk):

    manifest.json                    user, time, row counts
    threads/<thread id>.json         {"thread": ..., "items": [...]}, items oldest first
    attachments.json                 every attachment's record
    attachments/<id>/<file name>     its bytes
    <table>.json                     the rows of each other table: tasks, feedback, token_usage…

Rate-limit counters (`usage_counters`) are erased but not exported.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Table, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from stream_zip import ZIP_64, AsyncMemberFile, async_stream_zip

from app.store.db import utcnow
from app.store.files import FileStorage
from app.store.models import (
    AttachmentRow,
    Base,
    ItemRow,
    RenditionRow,
    ThreadRow,
    TurnEventRow,
    TurnLockRow,
    UsageCounterRow,
)

EXPORT_FORMAT = 1
ROWS_PER_FETCH = 500
FILE_MODE = 0o600
SPECIAL_TABLES = frozenset({ThreadRow.__tablename__, ItemRow.__tablename__})
"""Exported by thread rather than as a table."""
NOT_EXPORTED = frozenset(
    {
        UsageCounterRow.__tablename__,
        RenditionRow.__tablename__,
        TurnLockRow.__tablename__,
        TurnEventRow.__tablename__,
    }
)
"""Rate-limit windows: counters of the last minute or day, not the user's data (erased all the
same). The export request itself counts in them. Renditions: downscaled copies of attachments
for the model, whose originals the export holds (erased all the same). Turn locks and events:
a running turn's lease and its stream for re-attaching, gone seconds after the turn ends; the
answer itself is in the thread's items."""
UNSAFE_NAME = re.compile(r"[^\w.\- ]+")


def user_tables() -> list[Table]:
    """Tables with rows owned by a user, dependents first (the order to delete in)."""
    return [table for table in reversed(Base.metadata.sorted_tables) if "user_id" in table.c]


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """What an export will hold, read before the response starts (so an outage is a 503)."""

    user_id: str
    counts: dict[str, int]
    thread_ids: list[str]
    attachments: list[tuple[str, str]]
    """(id, file name) of each attachment."""


class UserData:
    """Export and erase one user's data; list the users the database knows."""

    def __init__(
        self,
        engine: AsyncEngine,
        files: FileStorage,
        *,
        forget_model_copies: Callable[[str], Awaitable[int]] | None = None,
    ) -> None:
        self.engine = engine
        self.files = files
        self.forget_model_copies = forget_model_copies
        """Deletes the user's copies at the model provider (`AttachmentInputs.forget_user`):
        run before the rows go, as it reads the provider's file ids from them."""

    async def counts(self, user_id: str) -> dict[str, int]:
        """The user's rows per table."""
        async with self.engine.connect() as conn:
            return {
                table.name: int(
                    await conn.scalar(
                        select(func.count()).select_from(table).where(table.c.user_id == user_id)
                    )
                    or 0
                )
                for table in user_tables()
            }

    async def users(self) -> dict[str, dict[str, int]]:
        """Every user with at least one row anywhere, sorted, with their rows per table (one
        grouped query per table)."""
        users: dict[str, dict[str, int]] = {}
        async with self.engine.connect() as conn:
            for table in user_tables():
                stmt = select(table.c.user_id, func.count()).group_by(table.c.user_id)
                for user_id, count in (await conn.execute(stmt)).all():
                    users.setdefault(user_id, {})[table.name] = int(count)
        return dict(sorted(users.items()))

    async def erase(self, user_id: str) -> dict[str, int]:
        """Delete every row of the user in one transaction, then their attachments' objects.

        Returns the rows deleted per table, `attachment_files`: the stored files removed
        (database-stored bytes go with their rows; other storages are told afterwards), and
        `provider_copies`: the copies deleted at the model provider (first, best effort).
        """
        counts: dict[str, int] = {}
        if self.forget_model_copies is not None:
            counts["provider_copies"] = await self.forget_model_copies(user_id)
        attachment_ids: list[str] = []
        async with self.engine.begin() as conn:
            for table in user_tables():
                stmt = delete(table).where(table.c.user_id == user_id)
                if table is AttachmentRow.__table__:
                    # The ids of exactly the rows deleted, an upload racing the erase included.
                    result = await conn.execute(stmt.returning(table.c.id))
                    attachment_ids = list(result.scalars())
                    counts[table.name] = len(attachment_ids)
                else:
                    counts[table.name] = (await conn.execute(stmt)).rowcount
        if attachment_ids:
            await self.files.delete(attachment_ids)
        counts["attachment_files"] = len(attachment_ids)
        return counts

    async def plan_export(self, user_id: str) -> ExportPlan:
        counts = {
            name: count
            for name, count in (await self.counts(user_id)).items()
            if name not in NOT_EXPORTED
        }
        threads = (
            select(ThreadRow.id)
            .where(ThreadRow.user_id == user_id)
            .order_by(ThreadRow.created_at, ThreadRow.id)
        )
        attachments = (
            select(AttachmentRow.id, AttachmentRow.data["name"].as_string())
            .where(AttachmentRow.user_id == user_id)
            .order_by(AttachmentRow.created_at, AttachmentRow.id)
        )
        async with self.engine.connect() as conn:
            thread_ids = list((await conn.execute(threads)).scalars())
            files = [(row[0], row[1] or "file") for row in (await conn.execute(attachments)).all()]
        return ExportPlan(user_id, counts, thread_ids, files)

    def export(self, plan: ExportPlan) -> AsyncIterable[bytes]:
        """The zip's bytes, read from the database (and file storage) as they are sent."""
        return async_stream_zip(self._members(plan))

    async def _members(self, plan: ExportPlan) -> AsyncIterator[AsyncMemberFile]:
        now = utcnow()
        manifest = {
            "format": EXPORT_FORMAT,
            "user_id": plan.user_id,
            "exported_at": now.replace(tzinfo=UTC).isoformat(),
            "rows": plan.counts,
            "attachment_files": len(plan.attachments),
        }
        yield _member("manifest.json", now, _once(_json_bytes(manifest)))
        for thread_id in plan.thread_ids:
            yield _member(f"threads/{thread_id}.json", now, self._thread(plan.user_id, thread_id))
        for table in user_tables():
            if table.name not in SPECIAL_TABLES | NOT_EXPORTED:
                yield _member(f"{table.name}.json", now, self._rows(table, plan.user_id))
        for attachment_id, name in plan.attachments:
            path = f"attachments/{attachment_id}/{_safe_name(name)}"
            yield _member(path, now, self._content(attachment_id))

    async def _thread(self, user_id: str, thread_id: str) -> AsyncIterator[bytes]:
        thread = select(ThreadRow.data).where(
            ThreadRow.id == thread_id, ThreadRow.user_id == user_id
        )
        items = (
            select(ItemRow.data)
            .where(ItemRow.thread_id == thread_id, ItemRow.user_id == user_id)
            .order_by(ItemRow.created_at, ItemRow.id)
        )
        async with self.engine.connect() as conn:
            data = await conn.scalar(thread)
            yield b'{"thread": ' + _json_bytes(data) + b', "items": ['
            first = True
            async for batch in (
                await conn.stream(items.execution_options(yield_per=ROWS_PER_FETCH))
            ).partitions():
                chunk = b", ".join(_json_bytes(row.data) for row in batch)
                yield (b"" if first else b", ") + chunk
                first = False
            yield b"]}"

    async def _rows(self, table: Table, user_id: str) -> AsyncIterator[bytes]:
        """The table's rows as a JSON array, fetched in batches."""
        stmt = select(table).where(table.c.user_id == user_id)
        if "created_at" in table.c:
            stmt = stmt.order_by(table.c.created_at)
        yield b"["
        first = True
        async with self.engine.connect() as conn:
            result = await conn.stream(stmt.execution_options(yield_per=ROWS_PER_FETCH))
            async for batch in result.partitions():
                chunk = b", ".join(_json_bytes(dict(row._mapping)) for row in batch)
                yield (b"" if first else b", ") + chunk
                first = False
        yield b"]"

    async def _content(self, attachment_id: str) -> AsyncIterator[bytes]:
        """The attachment's bytes; nothing for a pending upload."""
        data = await self.files.get(attachment_id)
        yield data or b""


def _member(path: str, modified: datetime, content: AsyncIterator[bytes]) -> AsyncMemberFile:
    return (path, modified, FILE_MODE, ZIP_64, content)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, default=_json_default, ensure_ascii=False).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _safe_name(name: str) -> str:
    """A file name without path separators or control characters, never empty."""
    cleaned = UNSAFE_NAME.sub("_", name).strip(". ")[:120]
    return cleaned or "file"
