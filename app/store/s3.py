"""Attachment bytes in an S3-compatible bucket (AWS S3, Cloudflare R2, Tigris, MinIO).

A small client over httpx: path-style URLs (`{endpoint}/{bucket}/{key}`) and AWS Signature
Version 4 with a signed payload hash, which is all three operations need. No SDK, so no extra
dependency; the signer is checked against botocore's in the tests.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import httpx

from app.config import Settings
from app.store.files import FileStorageError

logger = logging.getLogger(__name__)

ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True, slots=True)
class S3Config:
    endpoint_url: str
    bucket: str
    region: str
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    prefix: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Config:
        assert settings.attachment_s3_bucket is not None  # checked by Settings
        assert settings.attachment_s3_access_key_id is not None
        assert settings.attachment_s3_secret_access_key is not None
        region = settings.attachment_s3_region
        token = settings.attachment_s3_session_token
        return cls(
            endpoint_url=(
                settings.attachment_s3_endpoint_url or f"https://s3.{region}.amazonaws.com"
            ).rstrip("/"),
            bucket=settings.attachment_s3_bucket,
            region=region,
            access_key_id=settings.attachment_s3_access_key_id,
            secret_access_key=settings.attachment_s3_secret_access_key.get_secret_value(),
            session_token=token.get_secret_value() if token else None,
            prefix=settings.attachment_s3_prefix,
        )


def sigv4_headers(
    config: S3Config, method: str, url: str, payload: bytes, now: datetime | None = None
) -> dict[str, str]:
    """The headers that sign one S3 request (no query string) with Signature Version 4."""
    now = now or datetime.now(UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{config.region}/s3/aws4_request"
    parts = urlsplit(url)
    headers = {
        "host": parts.netloc,
        "x-amz-content-sha256": hashlib.sha256(payload).hexdigest(),
        "x-amz-date": amz_date,
    }
    if config.session_token:
        headers["x-amz-security-token"] = config.session_token
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            quote(parts.path or "/", safe="/-_.~"),
            "",
            "".join(f"{name}:{headers[name].strip()}\n" for name in sorted(headers)),
            signed,
            headers["x-amz-content-sha256"],
        ]
    )
    to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{config.secret_access_key}".encode()
    for part in (amz_date[:8], config.region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"{ALGORITHM} Credential={config.access_key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    del headers["host"]  # httpx sends it
    return headers


class S3FileStorage:
    """`FileStorage` on a bucket; object key = prefix + attachment id."""

    def __init__(self, config: S3Config, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(30.0))

    def object_url(self, key: str) -> str:
        path = quote(f"{self.config.bucket}/{self.config.prefix}{key}", safe="/-_.~")
        return f"{self.config.endpoint_url}/{path}"

    async def _send(self, method: str, key: str, payload: bytes = b"") -> httpx.Response:
        url = self.object_url(key)
        headers = sigv4_headers(self.config, method, url, payload)
        try:
            return await self._client.request(method, url, content=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise FileStorageError(f"S3 {method} failed: {type(exc).__name__}") from exc

    async def put(self, key: str, data: bytes) -> None:
        response = await self._send("PUT", key, data)
        if response.status_code != 200:
            raise FileStorageError(f"S3 PUT answered {response.status_code}")

    async def get(self, key: str) -> bytes | None:
        response = await self._send("GET", key)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise FileStorageError(f"S3 GET answered {response.status_code}")
        return response.content

    async def delete(self, keys: Sequence[str]) -> None:
        """Best effort: the metadata is already gone, so a leftover object is only logged."""
        for key in keys:
            try:
                response = await self._send("DELETE", key)
            except FileStorageError:
                logger.warning("Could not delete attachment object %s", key, exc_info=True)
                continue
            if response.status_code not in (200, 204, 404):
                logger.warning(
                    "Could not delete attachment object %s: S3 answered %d",
                    key,
                    response.status_code,
                )

    async def aclose(self) -> None:
        await self._client.aclose()
