"""Images at the model's useful resolution: what is sent inline, or uploaded, instead of the
original. Models scale images down to about 2048 px on the long side anyway, so a 15 MB photo
costs bytes on every request and buys nothing. And the encoded inline forms, cached in memory.
"""

from __future__ import annotations

import io
import logging
from collections import OrderedDict

from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

MAX_SIDE = 2048
"""The long side, in pixels, past which an image is scaled down."""
SMALL_IMAGE_BYTES = 1_000_000
"""An image within `MAX_SIDE` and this size is sent as it is: re-encoding gains little."""
JPEG_QUALITY = 85
ENCODED_CACHE_BYTES = 64 * 1024 * 1024
"""Encoded inline attachments kept in memory per process, least recently used dropped first."""


def image_rendition(data: bytes) -> tuple[str, bytes] | None:
    """The image scaled to `MAX_SIDE` and re-encoded (JPEG, or PNG where it has transparency),
    as (MIME type, bytes); `None` when the original is as good: small enough, smaller than the
    re-encoded one, or not an image Pillow reads (it then goes as it is)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            original_side = max(image.size)
            if original_side <= MAX_SIDE and len(data) <= SMALL_IMAGE_BYTES:
                return None
            image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced scale
            frame = ImageOps.exif_transpose(image)  # also loads the first frame only
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        logger.info("Image not re-encoded for the model: Pillow cannot read it", exc_info=True)
        return None
    frame.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if frame.mode in ("RGBA", "LA", "PA") or "transparency" in frame.info:
        frame.save(out, format="PNG", optimize=False)
        mime_type = "image/png"
    else:
        frame.convert("RGB").save(out, format="JPEG", quality=JPEG_QUALITY)
        mime_type = "image/jpeg"
    encoded = out.getvalue()
    if len(encoded) >= len(data) and original_side <= MAX_SIDE:
        return None  # not scaled, and re-encoding did not help
    return mime_type, encoded


class EncodedCache:
    """Encoded inline attachments by (owner, attachment id), bounded in characters."""

    def __init__(self, max_chars: int = ENCODED_CACHE_BYTES) -> None:
        self.max_chars = max_chars
        self._entries: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._chars = 0

    def get(self, key: tuple[str, str]) -> str | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: tuple[str, str], value: str) -> None:
        if len(value) > self.max_chars:
            return
        self.discard(key)
        self._entries[key] = value
        self._chars += len(value)
        while self._chars > self.max_chars:
            _, dropped = self._entries.popitem(last=False)
            self._chars -= len(dropped)

    def discard(self, key: tuple[str, str]) -> None:
        value = self._entries.pop(key, None)
        if value is not None:
            self._chars -= len(value)
