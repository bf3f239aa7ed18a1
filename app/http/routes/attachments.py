"""Attachment uploads and downloads, beside the `/chatkit` protocol route.

- `POST /chatkit/attachments`: direct upload (`uploadStrategy: {type: "direct"}`), as the caller.
- `POST /chatkit/attachments/{id}/upload`: the two-phase upload URL from `attachments.create`.
- `GET /chatkit/attachments/{id}/content`: download or image preview.

The last two are also reached by the browser without the app's `Authorization` header, so they
accept either the owner's identity or a short-lived signed URL (`?expires=…&sig=…`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from chatkit.types import Attachment, ImageAttachment
from fastapi import APIRouter, Depends, Request, Response

from app.errors import AppError, NotFound, PayloadTooLarge
from app.http.auth.base import Unauthenticated
from app.http.deps import CallerDep, ContextDep, ServicesDep
from app.http.multipart import FilePart, read_file_part
from app.store.attachments import (
    GENERIC_MIME_TYPE,
    MIME_TYPE,
    AttachmentAlreadyUploaded,
    declared_size,
    normalize_mime_type,
)
from app.store.db import has_id_shape
from app.store.store import ATTACHMENT_PREFIXES
from app.store.urls import UrlPurpose

router = APIRouter(prefix="/chatkit/attachments", tags=["attachments"])

FILE_FIELD = "file"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"
)


class BadSignature(AppError):
    """A signed link that is incomplete, expired or forged."""

    status, code = 403, "forbidden"


@router.post("")
async def upload_direct(request: Request, services: ServicesDep, context: ContextDep) -> Response:
    """Store a `multipart/form-data` `file` and return its `Attachment` as JSON."""
    attachments = services.attachments

    def check(part: FilePart) -> None:
        attachments.limits.check_name(part.filename)
        attachments.limits.check_type(normalize_mime_type(part.content_type, part.filename))

    part = await read_file_part(request, FILE_FIELD, attachments.limits.max_bytes, check)
    mime_type = normalize_mime_type(part.content_type, part.filename)
    attachment = await attachments.add_uploaded(part.filename, mime_type, part.data, context)
    return _attachment_json(attachment)


@dataclass(frozen=True, slots=True)
class Authorized:
    """An attachment the request may use, its owner, and the expiry of its signed URL, if any."""

    attachment: Attachment
    owner: str
    expires: int | None


def authorized(purpose: UrlPurpose) -> Callable[..., Awaitable[Authorized]]:
    """A dependency: the attachment, if the caller is its owner or holds a valid signed URL for
    `purpose` (the browser loads previews and posts two-phase uploads without credentials)."""

    async def authorize(
        attachment_id: str,
        services: ServicesDep,
        caller: CallerDep,
        expires: int | None = None,
        sig: str | None = None,
    ) -> Authorized:
        if not has_id_shape(attachment_id, ATTACHMENT_PREFIXES):
            raise NotFound("Attachment not found")  # before the database, and whoever asks
        urls = services.attachments.urls
        found = await services.attachments.find(attachment_id)
        if found is not None and caller is not None and found[1] == caller.user_id:
            return Authorized(*found, expires)
        if expires is not None or sig is not None:
            if expires is None or sig is None:
                raise BadSignature("The signed URL is incomplete")
            if urls.expired(expires):
                raise BadSignature("The signed URL has expired")
            if found is None or not urls.verify(purpose, attachment_id, found[1], expires, sig):
                raise BadSignature("The signed URL is not valid")
            return Authorized(*found, expires)
        if caller is None:
            raise Unauthenticated("Authentication required")
        raise NotFound(f"Attachment {attachment_id} not found")

    return authorize


UploadDep = Annotated[Authorized, Depends(authorized("upload"))]
ContentDep = Annotated[Authorized, Depends(authorized("content"))]


@router.post("/{attachment_id}/upload")
async def upload_two_phase(request: Request, services: ServicesDep, upload: UploadDep) -> Response:
    """Receive the bytes of an attachment made by `attachments.create`; clears its descriptor.

    The file may not be larger than the size `attachments.create` declared.
    """
    attachments, attachment, owner = services.attachments, upload.attachment, upload.owner
    if attachment.upload_descriptor is None:
        raise AttachmentAlreadyUploaded(f"Attachment {attachment.id} is already uploaded")

    def check(part: FilePart) -> None:
        normalize_mime_type(part.content_type, part.filename)  # a malformed type is refused

    limit, declared = attachments.limits.max_bytes, declared_size(attachment)
    try:
        limit = limit if declared is None else min(declared, limit)
        part = await read_file_part(request, FILE_FIELD, limit, check)
    except PayloadTooLarge:
        # Larger than it declared: drop the pending record, leave nothing behind.
        await attachments.discard(attachment.id, owner)
        raise
    done = await attachments.complete_upload(attachment, owner, part.data)
    return _attachment_json(done)


@router.get("/{attachment_id}/content")
async def download(services: ServicesDep, content: ContentDep) -> Response:
    """The file's bytes, inline for images and as a download otherwise.

    Downloads count against the owner's per-minute limit: a signed link needs no login.
    """
    attachment, expires = content.attachment, content.expires
    refusal = await services.rate_limiter.check_download(content.owner)
    if refusal is not None:
        raise refusal
    data = await services.attachments.read_content(attachment.id, content.owner)
    if data is None:
        raise NotFound(f"Attachment {attachment.id} has no content yet")
    disposition = "inline" if isinstance(attachment, ImageAttachment) else "attachment"
    max_age = 300 if expires is None else max(0, min(expires - int(time.time()), 3600))
    return Response(
        content=data,
        # Types are validated on the way in; one stored before that is served as plain bytes.
        media_type=attachment.mime_type
        if MIME_TYPE.fullmatch(attachment.mime_type)
        else GENERIC_MIME_TYPE,
        headers={
            "Content-Disposition": content_disposition(disposition, attachment.name),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": f"private, max-age={max_age}",
        },
    )


def content_disposition(disposition: str, filename: str) -> str:
    """`inline` or `attachment` with an ASCII `filename` and the exact RFC 5987 `filename*`."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\;%' else "_" for ch in filename)
    encoded = quote(filename, safe="")
    return f"{disposition}; filename=\"{fallback or 'file'}\"; filename*=UTF-8''{encoded}"


def _attachment_json(attachment: Attachment) -> Response:
    """Serialized as the SDK serializes it: no `None` fields, no integration `metadata`."""
    body = attachment.model_dump_json(
        by_alias=True, exclude_none=True, context={"exclude_metadata": True}
    )
    return Response(content=body, media_type="application/json")
