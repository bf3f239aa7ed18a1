"""Attachment uploads and downloads, beside the `/chatkit` protocol route.

- `POST /chatkit/attachments`: direct upload (`uploadStrategy: {type: "direct"}`), as the caller.
- `POST /chatkit/attachments/{id}/upload`: the two-phase upload URL from `attachments.create`.
- `GET /chatkit/attachments/{id}/content`: download or image preview.

The last two are also reached by the browser without the app's `Authorization` header, so they
accept either the owner's identity or a short-lived signed URL (`?expires=…&sig=…`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated
from urllib.parse import quote

from chatkit.types import Attachment, ImageAttachment
from fastapi import APIRouter, Depends, Request, Response

from app.context import RequestContext
from app.http.deps import ContextDep
from app.http.errors import (
    ApiError,
    AttachmentApiError,
    BadRequest,
    Forbidden,
    NotFound,
    Unauthorized,
)
from app.http.multipart import FilePart, MultipartError, read_file_part
from app.http.ratelimit import RateLimiter
from app.store.attachments import (
    GENERIC_MIME_TYPE,
    MIME_TYPE,
    AttachmentAlreadyUploaded,
    AttachmentRejected,
    AttachmentTooLarge,
    DatabaseAttachmentStore,
    declared_size,
    normalize_mime_type,
)
from app.store.db import has_id_shape
from app.store.files import FileStorageError
from app.store.store import ATTACHMENT_PREFIXES
from app.store.urls import UrlPurpose

router = APIRouter(prefix="/chatkit/attachments", tags=["attachments"])

FILE_FIELD = "file"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"
)


class StorageUnavailable(ApiError):
    status_code, code = 503, "storage_unavailable"


class RateLimited(ApiError):
    status_code, code = 429, "rate_limited"


def get_attachments(request: Request) -> DatabaseAttachmentStore:
    attachments: DatabaseAttachmentStore = request.app.state.attachments
    return attachments


AttachmentsDep = Annotated[DatabaseAttachmentStore, Depends(get_attachments)]


@router.post("")
async def upload_direct(
    request: Request, context: ContextDep, attachments: AttachmentsDep
) -> Response:
    """Store a `multipart/form-data` `file` and return its `Attachment` as JSON."""

    def check(part: FilePart) -> None:
        attachments.limits.check_name(part.filename)
        attachments.limits.check_type(normalize_mime_type(part.content_type, part.filename))

    part = await _read_file(request, check, attachments.limits.max_bytes)
    mime_type = normalize_mime_type(part.content_type, part.filename)
    with _storage_errors():
        attachment = await attachments.add_uploaded(part.filename, mime_type, part.data, context)
    return _attachment_json(attachment)


@contextmanager
def _storage_errors() -> Iterator[None]:
    """Refusals keep their own status; an unreachable file storage is a 503."""
    try:
        yield
    except AttachmentRejected as exc:
        raise AttachmentApiError(exc) from exc
    except FileStorageError as exc:
        raise StorageUnavailable("File storage is unavailable, try again later") from exc


@router.post("/{attachment_id}/upload")
async def upload_two_phase(
    attachment_id: str,
    request: Request,
    attachments: AttachmentsDep,
    expires: int | None = None,
    sig: str | None = None,
) -> Response:
    """Receive the bytes of an attachment made by `attachments.create`; clears its descriptor.

    The file may not be larger than the size `attachments.create` declared.
    """
    attachment, owner = await _authorize(
        request, attachments, "upload", attachment_id, expires, sig
    )
    if attachment.upload_descriptor is None:
        raise AttachmentApiError(
            AttachmentAlreadyUploaded(f"Attachment {attachment_id} is already uploaded")
        )

    def check(part: FilePart) -> None:
        normalize_mime_type(part.content_type, part.filename)  # a malformed type is refused

    limit, declared = attachments.limits.max_bytes, declared_size(attachment)
    try:
        part = await _read_file(request, check, limit if declared is None else min(declared, limit))
    except AttachmentApiError as exc:
        if exc.status_code == AttachmentTooLarge.status_code:
            # Larger than it declared: drop the pending record, leave nothing behind.
            await attachments.discard(attachment_id, owner)
        raise
    with _storage_errors():
        done = await attachments.complete_upload(attachment, owner, part.data)
    return _attachment_json(done)


@router.get("/{attachment_id}/content")
async def download(
    attachment_id: str,
    request: Request,
    attachments: AttachmentsDep,
    expires: int | None = None,
    sig: str | None = None,
) -> Response:
    """The file's bytes, inline for images and as a download otherwise.

    Downloads count against the owner's per-minute limit: a signed link needs no login.
    """
    attachment, owner = await _authorize(
        request, attachments, "content", attachment_id, expires, sig
    )
    limiter: RateLimiter = request.app.state.rate_limiter
    refusal = await limiter.check_download(request.app.state.engine, owner)
    if refusal is not None:
        raise RateLimited(refusal.message, headers={"Retry-After": str(refusal.retry_after)})
    with _storage_errors():
        data = await attachments.read_content(attachment_id, owner)
    if data is None:
        raise NotFound(f"Attachment {attachment_id} has no content yet")
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


async def _read_file(
    request: Request, check: Callable[[FilePart], None], max_bytes: int
) -> FilePart:
    try:
        return await read_file_part(
            request, field_name=FILE_FIELD, max_bytes=max_bytes, check=check
        )
    except AttachmentRejected as exc:
        raise AttachmentApiError(exc) from exc
    except MultipartError as exc:
        raise BadRequest(str(exc)) from exc


async def _authorize(
    request: Request,
    attachments: DatabaseAttachmentStore,
    purpose: UrlPurpose,
    attachment_id: str,
    expires: int | None,
    sig: str | None,
) -> tuple[Attachment, str]:
    """The attachment and its owner, if the caller is the owner or holds a valid signed URL."""
    if not has_id_shape(attachment_id, ATTACHMENT_PREFIXES):
        raise NotFound("Attachment not found")  # before the database, and whoever asks
    context: RequestContext | None = getattr(request.state, "context", None)
    found = await attachments.find(attachment_id)
    if found is not None and context is not None and found[1] == context.user_id:
        return found
    if expires is not None or sig is not None:
        if expires is None or sig is None:
            raise Forbidden("The signed URL is incomplete")
        if attachments.urls.expired(expires):
            raise Forbidden("The signed URL has expired")
        if found is None or not attachments.urls.verify(
            purpose, attachment_id, found[1], expires, sig
        ):
            raise Forbidden("The signed URL is not valid")
        return found
    if context is None:
        raise Unauthorized("Authentication required", headers={"WWW-Authenticate": "Bearer"})
    raise NotFound(f"Attachment {attachment_id} not found")


def _attachment_json(attachment: Attachment) -> Response:
    """Serialized as the SDK serializes it: no `None` fields, no integration `metadata`."""
    body = attachment.model_dump_json(
        by_alias=True, exclude_none=True, context={"exclude_metadata": True}
    )
    return Response(content=body, media_type="application/json")
