"""The SDK's `AttachmentStore`: creates attachment records for two-phase uploads, deletes them."""

from __future__ import annotations

from chatkit.store import AttachmentStore
from chatkit.types import (
    Attachment,
    AttachmentCreateParams,
    AttachmentUploadDescriptor,
    FileAttachment,
    ImageAttachment,
)

from app.context import RequestContext
from app.store.store import SQLAlchemyStore, new_id


class DatabaseAttachmentStore(AttachmentStore[RequestContext]):
    """Attachment records live in the same database as threads, owned by one user."""

    def __init__(self, store: SQLAlchemyStore, public_base_url: str | None) -> None:
        self.store = store
        self.public_base_url = public_base_url

    def generate_attachment_id(self, mime_type: str, context: RequestContext) -> str:
        return new_id("attachment")

    async def create_attachment(
        self, input: AttachmentCreateParams, context: RequestContext
    ) -> Attachment:
        """Return a pending attachment whose descriptor tells the client where to POST the file."""
        attachment_id = self.generate_attachment_id(input.mime_type, context)
        base = self.public_base_url or context.base_url
        descriptor = AttachmentUploadDescriptor(
            url=f"{base}/chatkit/attachments/{attachment_id}/upload",
            method="POST",
        )
        if input.mime_type.startswith("image/"):
            return ImageAttachment(
                id=attachment_id,
                name=input.name,
                mime_type=input.mime_type,
                upload_descriptor=descriptor,
                preview_url=f"{base}/chatkit/attachments/{attachment_id}/content",
            )
        return FileAttachment(
            id=attachment_id,
            name=input.name,
            mime_type=input.mime_type,
            upload_descriptor=descriptor,
        )

    async def delete_attachment(self, attachment_id: str, context: RequestContext) -> None:
        # The SDK trusts the store for ownership: prove the caller owns it before anything goes.
        await self.store.load_attachment(attachment_id, context)
