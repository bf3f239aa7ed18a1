"""Signed attachment URLs, upload limits and the attachment settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.store.attachments import AttachmentLimits, normalize_mime_type
from app.store.urls import AttachmentUrlSigner

NOW = 1_800_000_000.0
SIGNER = AttachmentUrlSigner(b"k" * 32, ttl_seconds=600, public_base_url=None)


def parts(url: str) -> tuple[str, int, str]:
    path, query = url.split("?")
    params = dict(pair.split("=", 1) for pair in query.split("&"))
    return path, int(params["expires"]), params["sig"]


def test_a_signed_url_verifies_only_for_its_purpose_id_owner_and_time() -> None:
    url = SIGNER.url("content", "atc_1", "alice", "http://api.test", now=NOW)
    path, expires, sig = parts(url)
    assert path == "http://api.test/chatkit/attachments/atc_1/content"
    assert SIGNER.verify("content", "atc_1", "alice", expires, sig, now=NOW)
    assert not SIGNER.verify("upload", "atc_1", "alice", expires, sig, now=NOW)
    assert not SIGNER.verify("content", "atc_2", "alice", expires, sig, now=NOW)
    assert not SIGNER.verify("content", "atc_1", "bob", expires, sig, now=NOW)
    assert not SIGNER.verify("content", "atc_1", "alice", expires + 1, sig, now=NOW)
    assert not SIGNER.verify("content", "atc_1", "alice", expires, sig, now=expires + 1)
    other_key = AttachmentUrlSigner(b"x" * 32, ttl_seconds=600, public_base_url=None)
    assert not other_key.verify("content", "atc_1", "alice", expires, sig, now=NOW)


def test_urls_live_at_least_the_ttl_and_stay_stable_for_caching() -> None:
    expires = SIGNER.expiry(NOW)
    assert NOW + 600 <= expires <= NOW + 900
    # Within the same half-TTL window the URL is identical, so browsers can cache previews.
    same_window = NOW - NOW % 300
    assert SIGNER.expiry(same_window) == SIGNER.expiry(same_window + 299)


def test_public_base_url_wins_over_the_request() -> None:
    signer = AttachmentUrlSigner(b"k", 600, public_base_url="https://chat.example.com")
    url = signer.url("upload", "atc_1", "alice", "http://internal:8000", now=NOW)
    assert url.startswith("https://chat.example.com/chatkit/attachments/atc_1/upload?")


def test_mime_type_patterns() -> None:
    limits = AttachmentLimits(100, ("image/*", "application/pdf", "text/*"), 3)
    assert limits.allows_type("image/png") and limits.allows_type("IMAGE/JPEG")
    assert limits.allows_type("application/pdf") and limits.allows_type("text/csv")
    assert not limits.allows_type("application/pdfx")
    assert not limits.allows_type("application/zip")
    assert AttachmentLimits(100, ("*/*",), 3).allows_type("application/zip")


def test_mime_type_normalization() -> None:
    assert normalize_mime_type("Text/Plain; charset=utf-8", "a.txt") == "text/plain"
    assert normalize_mime_type(None, "doc.pdf") == "application/pdf"
    assert normalize_mime_type("application/octet-stream", "p.png") == "image/png"
    assert normalize_mime_type("", "noext") == "application/octet-stream"


def test_settings_read_the_mime_list_and_require_a_secret_in_production(monkeypatch) -> None:
    settings = Settings(_env_file=None, attachment_allowed_mime_types="image/*, Text/Plain")
    assert settings.attachment_allowed_mime_types == ["image/*", "text/plain"]
    with pytest.raises(ValidationError, match="ATTACHMENT_SIGNING_SECRET"):
        Settings(_env_file=None, environment="production")
    with pytest.raises(ValidationError, match="ATTACHMENT_SIGNING_SECRET"):
        Settings(_env_file=None, environment="production", attachment_signing_secret="short")
    # An empty value, as copied from .env.example, is unset rather than an empty key.
    monkeypatch.setenv("ATTACHMENT_SIGNING_SECRET", "")
    assert Settings(_env_file=None).attachment_signing_secret is None
