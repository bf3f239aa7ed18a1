"""Where attachment bytes live: one small interface, and the default that needs no infrastructure.

Keys are attachment ids. The database storage keeps the bytes next to the metadata, so deleting
an attachment's metadata row removes its content in the same transaction (a foreign key with
`ON DELETE CASCADE`); callers still call `delete` after removing metadata, which an external
storage needs and which is a cheap no-op here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import Unavailable
from app.store.db import upsert_insert
from app.store.models import AttachmentContentRow


class FileStorageError(Unavailable):
    """The file storage failed or is unreachable: a 503. What failed is logged, not told."""

    code = "storage_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__("File storage is unavailable, try again later")
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class FileStorage(Protocol):
    """Bytes by key. `put` overwrites; `get` of a missing key is `None`; `delete` ignores them.

    `put` and `get` raise `FileStorageError` when the storage fails; `delete` runs after the
    metadata is gone, so it is best effort and only logs.
    """

    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def delete(self, keys: Sequence[str]) -> None: ...

    async def aclose(self) -> None: ...


class DatabaseFileStorage:
    """Content in the `attachment_contents` table; a key must name an existing attachment row."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = upsert_insert(engine)

    async def put(self, key: str, data: bytes) -> None:
        stmt = self._insert(AttachmentContentRow).values(id=key, size=len(data), data=data)
        stmt = stmt.on_conflict_do_update(
            index_elements=[AttachmentContentRow.id],
            set_={"size": stmt.excluded.size, "data": stmt.excluded.data},
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def get(self, key: str) -> bytes | None:
        stmt = select(AttachmentContentRow.data).where(AttachmentContentRow.id == key)
        async with self.engine.connect() as conn:
            data: bytes | None = (await conn.execute(stmt)).scalar_one_or_none()
        return data

    async def delete(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        stmt = delete(AttachmentContentRow).where(AttachmentContentRow.id.in_(list(keys)))
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def aclose(self) -> None:
        """Nothing to release: the engine belongs to the app."""
