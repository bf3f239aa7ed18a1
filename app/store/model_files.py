"""What the model has of each attachment: its id in a provider's Files API, and the rendition
sent inline where there is none. Every statement is scoped by `user_id`, which leads both keys.

Rows outlive nothing: `forget` removes an attachment's rows when the attachment goes, and hands
back the provider file ids, so the provider's copies can be deleted too.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.db import autocommit, upsert_insert, utcnow
from app.store.models import ProviderFileRow, RenditionRow


@dataclass(frozen=True, slots=True)
class Rendition:
    """An attachment as the model gets it inline: `data` None means the original bytes."""

    mime_type: str
    size: int
    data: bytes | None


@dataclass(frozen=True, slots=True)
class ProviderFile:
    provider: str
    file_id: str


class ModelFileStore:
    """The `provider_files` and `attachment_renditions` tables."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._single = autocommit(engine)
        insert = upsert_insert(engine)
        file_insert = insert(ProviderFileRow)
        self._upsert_file = file_insert.on_conflict_do_update(
            index_elements=[
                ProviderFileRow.user_id,
                ProviderFileRow.attachment_id,
                ProviderFileRow.provider,
            ],
            set_={
                "file_id": file_insert.excluded.file_id,
                "created_at": file_insert.excluded.created_at,
            },
        )
        rendition_insert = insert(RenditionRow)
        self._upsert_rendition = rendition_insert.on_conflict_do_nothing(
            index_elements=[RenditionRow.user_id, RenditionRow.attachment_id]
        )

    async def file_ids(
        self, user_id: str, provider: str, attachment_ids: Collection[str]
    ) -> dict[str, str]:
        """The provider's file id of each attachment that has one."""
        if not attachment_ids:
            return {}
        stmt = select(ProviderFileRow.attachment_id, ProviderFileRow.file_id).where(
            ProviderFileRow.user_id == user_id,
            ProviderFileRow.attachment_id.in_(list(attachment_ids)),
            ProviderFileRow.provider == provider,
        )
        async with self._single.connect() as conn:
            return {row.attachment_id: row.file_id for row in await conn.execute(stmt)}

    async def save_file_id(
        self, user_id: str, provider: str, attachment_id: str, file_id: str
    ) -> None:
        row = {
            "user_id": user_id,
            "attachment_id": attachment_id,
            "provider": provider,
            "file_id": file_id,
            "created_at": utcnow(),
        }
        async with self._single.connect() as conn:
            await conn.execute(self._upsert_file, row)

    async def rendition_sizes(
        self, user_id: str, attachment_ids: Collection[str]
    ) -> dict[str, tuple[str, int]]:
        """The type and size of each attachment's rendition, without its bytes."""
        if not attachment_ids:
            return {}
        stmt = select(RenditionRow.attachment_id, RenditionRow.mime_type, RenditionRow.size).where(
            RenditionRow.user_id == user_id,
            RenditionRow.attachment_id.in_(list(attachment_ids)),
        )
        async with self._single.connect() as conn:
            return {
                row.attachment_id: (row.mime_type, row.size) for row in await conn.execute(stmt)
            }

    async def rendition(self, user_id: str, attachment_id: str) -> Rendition | None:
        stmt = select(RenditionRow.mime_type, RenditionRow.size, RenditionRow.data).where(
            RenditionRow.user_id == user_id, RenditionRow.attachment_id == attachment_id
        )
        async with self._single.connect() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        return None if row is None else Rendition(row.mime_type, row.size, row.data)

    async def save_rendition(self, user_id: str, attachment_id: str, rendition: Rendition) -> None:
        """Keep the first rendition made: two turns making one at once made the same."""
        row = {
            "user_id": user_id,
            "attachment_id": attachment_id,
            "mime_type": rendition.mime_type,
            "size": rendition.size,
            "data": rendition.data,
            "created_at": utcnow(),
        }
        async with self._single.connect() as conn:
            await conn.execute(self._upsert_rendition, row)

    async def forget(self, user_id: str, attachment_ids: Collection[str]) -> list[ProviderFile]:
        """Delete the rows of these attachments; returns the provider copies they named."""
        if not attachment_ids:
            return []
        ids = list(attachment_ids)
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(RenditionRow).where(
                    RenditionRow.user_id == user_id, RenditionRow.attachment_id.in_(ids)
                )
            )
            deleted = await conn.execute(
                delete(ProviderFileRow)
                .where(ProviderFileRow.user_id == user_id, ProviderFileRow.attachment_id.in_(ids))
                .returning(ProviderFileRow.provider, ProviderFileRow.file_id)
            )
            return [ProviderFile(row.provider, row.file_id) for row in deleted]

    async def forget_user(self, user_id: str) -> list[ProviderFile]:
        """Delete every row of the user (a data erasure); returns the provider copies."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(RenditionRow).where(RenditionRow.user_id == user_id))
            deleted = await conn.execute(
                delete(ProviderFileRow)
                .where(ProviderFileRow.user_id == user_id)
                .returning(ProviderFileRow.provider, ProviderFileRow.file_id)
            )
            return [ProviderFile(row.provider, row.file_id) for row in deleted]
