"""Short-lived signed URLs for attachment uploads and previews.

The browser loads `ImageAttachment.preview_url` and may POST to a two-phase upload URL without
the app's `Authorization` header, so these URLs carry their own proof: an HMAC-SHA256 over the
purpose, the attachment id, its owner and an expiry. The owner is not in the URL; the route looks
it up by id and recomputes the signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from typing import Literal, TypeVar

from chatkit.types import FileAttachment, ImageAttachment
from pydantic import AnyUrl

from app.config import Settings

logger = logging.getLogger(__name__)

UrlPurpose = Literal["upload", "content"]
A = TypeVar("A", bound=FileAttachment | ImageAttachment)


class AttachmentUrlSigner:
    """Builds and checks signed attachment URLs.

    An expiry is rounded up to a multiple of half the TTL, so a URL stays the same for a while
    and browsers can cache previews; every URL is valid for at least `ttl_seconds`.
    """

    def __init__(self, secret: bytes, ttl_seconds: int, public_base_url: str | None) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds
        self.public_base_url = public_base_url

    def signature(self, purpose: UrlPurpose, attachment_id: str, owner: str, expires: int) -> str:
        message = f"{purpose}\n{attachment_id}\n{owner}\n{expires}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def expiry(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        step = max(self.ttl_seconds // 2, 1)
        return (int(now + self.ttl_seconds) // step + 1) * step

    def url(
        self,
        purpose: UrlPurpose,
        attachment_id: str,
        owner: str,
        base_url: str,
        now: float | None = None,
    ) -> str:
        """An absolute URL on `PUBLIC_BASE_URL` (else the request's base URL)."""
        expires = self.expiry(now)
        sig = self.signature(purpose, attachment_id, owner, expires)
        base = self.public_base_url or base_url
        return f"{base}/chatkit/attachments/{attachment_id}/{purpose}?expires={expires}&sig={sig}"

    def verify(
        self,
        purpose: UrlPurpose,
        attachment_id: str,
        owner: str,
        expires: int,
        signature: str,
        now: float | None = None,
    ) -> bool:
        if self.expired(expires, now):
            return False
        expected = self.signature(purpose, attachment_id, owner, expires)
        return hmac.compare_digest(expected.encode(), signature.encode())

    @staticmethod
    def expired(expires: int, now: float | None = None) -> bool:
        return expires < (time.time() if now is None else now)

    def with_fresh_preview(self, attachment: A, owner: str, base_url: str) -> A:
        """The attachment with a newly signed `preview_url` (images only)."""
        if not isinstance(attachment, ImageAttachment):
            return attachment
        url = self.url("content", attachment.id, owner, base_url)
        return attachment.model_copy(update={"preview_url": AnyUrl(url)})


def signer_from_settings(settings: Settings) -> AttachmentUrlSigner:
    """`ATTACHMENT_SIGNING_SECRET`, or in development a random key for this process only."""
    if settings.attachment_signing_secret is not None:
        secret = settings.attachment_signing_secret.get_secret_value().encode()
    else:
        logger.warning(
            "ATTACHMENT_SIGNING_SECRET is not set: attachment URLs are signed with a random key "
            "for this process, so they stop working after a restart or on another replica"
        )
        secret = secrets.token_bytes(32)
    return AttachmentUrlSigner(
        secret, settings.attachment_url_ttl_seconds, settings.public_base_url
    )
