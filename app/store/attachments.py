"""`Attachments`: the SDK's `AttachmentStore`, plus what the upload routes need.

An attachment is a record (the `attachments` table, through `SQLAlchemyStore`, its only owner)
and bytes in a `FileStorage` keyed by its id: the database by default, or an S3 bucket. This
module checks the limits, signs the URLs and keeps the two in step. Every operation is scoped
to the attachment's owner.

A new storage backend is one class implementing `FileStorage` (see `app/store/files.py`) and one
line in `app/services.py`.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from fnmatch import fnmatchcase

from chatkit.store import AttachmentStore
from chatkit.types import (
    Attachment,
    AttachmentCreateParams,
    AttachmentUploadDescriptor,
    FileAttachment,
    ImageAttachment,
)
from pydantic import AnyUrl

from app.config import Settings
from app.context import RequestContext
from app.errors import AppError, BadRequest, PayloadTooLarge
from app.store.files import FileStorage
from app.store.store import SQLAlchemyStore, new_id
from app.store.urls import AttachmentUrlSigner

GENERIC_MIME_TYPE = "application/octet-stream"
MAX_NAME_LENGTH = 255
DECLARED_SIZE = "declared_size"
"""The `metadata` key under which a two-phase attachment keeps the size it announced."""

_RESTRICTED_NAME = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
MIME_TYPE = re.compile(f"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}")
"""RFC 6838 section 4.2, lowercased: `type-name "/" subtype-name`, 127 characters each at most."""


class AttachmentRejected(BadRequest):
    """An upload or message the attachment limits refuse."""

    code = "attachment_rejected"


class InvalidMimeType(BadRequest):
    code = "invalid_mime_type"


class UnsupportedAttachmentType(AppError):
    status, code = 415, "unsupported_media_type"


class AttachmentTooLarge(PayloadTooLarge):
    pass


class AttachmentAlreadyUploaded(AppError):
    status, code = 409, "already_uploaded"


@dataclass(frozen=True, slots=True)
class AttachmentLimits:
    """Size, type and count limits from settings (`ATTACHMENT_*`)."""

    max_bytes: int
    allowed_mime_types: tuple[str, ...]
    max_per_message: int

    @classmethod
    def from_settings(cls, settings: Settings) -> AttachmentLimits:
        return cls(
            max_bytes=settings.attachment_max_bytes,
            allowed_mime_types=tuple(settings.attachment_allowed_mime_types),
            max_per_message=settings.attachment_max_per_message,
        )

    def allows_type(self, mime_type: str) -> bool:
        """Patterns are MIME types with `*` wildcards: `image/*`, `application/pdf`, `*/*`."""
        mime_type = mime_type.lower()
        return any(fnmatchcase(mime_type, pattern) for pattern in self.allowed_mime_types)

    def check_type(self, mime_type: str) -> None:
        if not self.allows_type(mime_type):
            allowed = ", ".join(self.allowed_mime_types) or "none"
            raise UnsupportedAttachmentType(
                f"File type {mime_type} is not allowed (allowed: {allowed})"
            )

    def check_size(self, size: int) -> None:
        if size < 0:
            raise AttachmentRejected("The file size cannot be negative")
        if size > self.max_bytes:
            raise AttachmentTooLarge(f"File is larger than the limit of {self.max_bytes} bytes")

    @staticmethod
    def check_name(name: str) -> None:
        """Names end up in `Content-Disposition` headers: keep them a file name's length."""
        if len(name) > MAX_NAME_LENGTH:
            raise AttachmentRejected(f"File names are limited to {MAX_NAME_LENGTH} characters")


def normalize_mime_type(declared: str | None, filename: str) -> str:
    """The type a client declared, lowercased, without parameters; else a guess from the name.

    A declared type must be RFC 6838's `type/subtype`, else `InvalidMimeType`: it is sent back
    as a `Content-Type` one day, where CR, LF or NUL would break the response.
    """
    mime_type = (declared or "").split(";", 1)[0].strip().lower()
    if mime_type and not MIME_TYPE.fullmatch(mime_type):
        raise InvalidMimeType("The file's type is not a valid MIME type (type/subtype, RFC 6838)")
    if mime_type and mime_type != GENERIC_MIME_TYPE:
        return mime_type
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or GENERIC_MIME_TYPE


def declared_size(attachment: Attachment) -> int | None:
    """The size `attachments.create` announced for a two-phase upload, if it recorded one."""
    size = (attachment.metadata or {}).get(DECLARED_SIZE)
    return size if isinstance(size, int) else None


class Attachments(AttachmentStore[RequestContext]):
    """Attachments owned by one user: records in `store`, bytes in `files`, URLs by `urls`."""

    def __init__(
        self,
        store: SQLAlchemyStore,
        files: FileStorage,
        urls: AttachmentUrlSigner,
        limits: AttachmentLimits,
    ) -> None:
        self.store = store
        self.files = files
        self.urls = urls
        self.limits = limits

    def generate_attachment_id(self, mime_type: str, context: RequestContext) -> str:
        return new_id("attachment")

    # the SDK's hooks

    async def create_attachment(
        self, input: AttachmentCreateParams, context: RequestContext
    ) -> Attachment:
        """Two-phase: a pending attachment whose descriptor is a signed URL to POST the file to.

        The SDK saves the returned attachment through the store.
        """
        mime_type = normalize_mime_type(input.mime_type, input.name)
        self.limits.check_name(input.name)
        self.limits.check_type(mime_type)
        self.limits.check_size(input.size)
        attachment_id = self.generate_attachment_id(mime_type, context)
        upload_url = self.urls.url("upload", attachment_id, context.user_id, context.base_url)
        descriptor = AttachmentUploadDescriptor(url=AnyUrl(upload_url), method="POST")
        attachment = self._build(attachment_id, input.name, mime_type, context, descriptor)
        attachment.metadata = {DECLARED_SIZE: input.size}  # the upload may not be larger
        return attachment

    async def delete_attachment(self, attachment_id: str, context: RequestContext) -> None:
        """Remove metadata and content of the caller's attachment.

        The SDK trusts this call for ownership, so another user's (or an unknown) id is a
        `NotFoundError` (a 404). The SDK then calls `Store.delete_attachment`, a no-op by then.
        """
        await self.store.load_attachment(attachment_id, context)
        await self.store.delete_attachment(attachment_id, context)

    # uploads and downloads

    async def add_uploaded(
        self, name: str, mime_type: str, data: bytes, context: RequestContext
    ) -> Attachment:
        """Direct upload: save the metadata and the bytes of a file that has arrived whole."""
        self.limits.check_name(name)
        self.limits.check_type(mime_type)
        self.limits.check_size(len(data))
        attachment_id = self.generate_attachment_id(mime_type, context)
        attachment = self._build(attachment_id, name, mime_type, context, None)
        await self.store.save_attachment(attachment, context)
        try:
            await self.files.put(attachment_id, data)
        except BaseException:
            await self.store.delete_attachment(attachment_id, context)
            raise
        return attachment

    async def find(self, attachment_id: str) -> tuple[Attachment, str] | None:
        """The attachment and its owner, whoever asks: for routes that check a signature."""
        return await self.store.find_attachment(attachment_id)

    async def complete_upload(self, attachment: Attachment, owner: str, data: bytes) -> Attachment:
        """Two-phase: claim the pending attachment, then store its bytes.

        The claim is one conditional UPDATE (still pending -> uploaded), so of two uploads to the
        same URL exactly one wins and the other is `AttachmentAlreadyUploaded` before any of its
        bytes are written. If the bytes cannot be stored, the claim is undone: the URL works again.
        """
        self.limits.check_size(len(data))
        done = attachment.model_copy(update={"upload_descriptor": None})
        if not await self.store.replace_attachment(done, owner, pending=True):
            raise AttachmentAlreadyUploaded(f"Attachment {attachment.id} is already uploaded")
        try:
            await self.files.put(attachment.id, data)
        except BaseException:
            await self.store.replace_attachment(attachment, owner, pending=False)
            raise
        return done

    async def discard(self, attachment_id: str, owner: str) -> None:
        """Remove a pending attachment whose upload was refused, so nothing is left behind."""
        await self.store.delete_pending_attachment(attachment_id, owner)

    async def read_content(self, attachment_id: str, owner: str) -> bytes | None:
        """The bytes of `owner`'s attachment; `None` if it is not theirs or was never uploaded."""
        if not await self.store.owns_attachment(attachment_id, owner):
            return None
        return await self.files.get(attachment_id)

    # messages and housekeeping

    async def check_message_attachments(
        self, attachment_ids: Sequence[str], thread_id: str | None, context: RequestContext
    ) -> None:
        """Refuse a message with too many, unknown, unfinished or foreign attachments.

        The SDK would load them only after saving the thread, leaving an empty thread behind.
        """
        if len(attachment_ids) > self.limits.max_per_message:
            raise AttachmentRejected(
                f"A message may carry at most {self.limits.max_per_message} attachments"
            )
        for attachment_id in attachment_ids:
            attachment = await self.store.load_attachment(attachment_id, context)
            if attachment.upload_descriptor is not None:
                raise AttachmentRejected(f"Attachment {attachment_id} has not been uploaded yet")
            if attachment.thread_id is not None and attachment.thread_id != thread_id:
                raise AttachmentRejected(f"Attachment {attachment_id} belongs to another thread")

    async def delete_orphans(self, older_than: timedelta) -> int:
        """Delete uploads never attached to a message (no thread) older than `older_than`."""
        return await self.store.delete_orphan_attachments(older_than)

    def _build(
        self,
        attachment_id: str,
        name: str,
        mime_type: str,
        context: RequestContext,
        descriptor: AttachmentUploadDescriptor | None,
    ) -> Attachment:
        if mime_type.startswith("image/"):
            preview = self.urls.url("content", attachment_id, context.user_id, context.base_url)
            return ImageAttachment(
                id=attachment_id,
                name=name,
                mime_type=mime_type,
                upload_descriptor=descriptor,
                preview_url=AnyUrl(preview),
            )
        return FileAttachment(
            id=attachment_id, name=name, mime_type=mime_type, upload_descriptor=descriptor
        )
