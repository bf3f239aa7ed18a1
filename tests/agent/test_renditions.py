"""Image renditions, the in-memory cache of encoded attachments, and which providers have a
Files API: pure functions, no database."""

from __future__ import annotations

import io

from PIL import Image

from app.agent.attachments import route
from app.agent.model import build_model_client
from app.agent.provider_files import ProviderFiles, provider_files
from app.agent.renditions import MAX_SIDE, EncodedCache, image_rendition
from tests.conftest import make_settings


def encoded(image: Image.Image, format: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=format)
    return out.getvalue()


def test_a_small_image_goes_as_it_is() -> None:
    assert image_rendition(encoded(Image.new("RGB", (640, 480), "red"), "PNG")) is None


def test_a_large_image_is_scaled_to_the_long_side_and_keeps_its_aspect() -> None:
    tall = encoded(Image.new("RGB", (1000, 4096), "blue"), "PNG")
    mime_type, data = image_rendition(tall) or ("", b"")
    assert mime_type == "image/jpeg"
    assert Image.open(io.BytesIO(data)).size == (500, MAX_SIDE)


def test_transparency_survives_as_png() -> None:
    clear = encoded(Image.new("RGBA", (3000, 100), (0, 0, 0, 0)), "PNG")
    mime_type, data = image_rendition(clear) or ("", b"")
    assert mime_type == "image/png"
    assert Image.open(io.BytesIO(data)).mode == "RGBA"


def test_bytes_pillow_cannot_read_go_as_they_are() -> None:
    assert image_rendition(b"\x89PNG\r\n\x1a\n not really" * 200_000) is None


def test_the_cache_drops_the_least_recently_used_past_its_size() -> None:
    cache = EncodedCache(max_chars=10)
    cache.put(("u", "a"), "aaaa")
    cache.put(("u", "b"), "bbbb")
    assert cache.get(("u", "a")) == "aaaa"  # now the most recently used
    cache.put(("u", "c"), "cccc")
    assert cache.get(("u", "b")) is None
    assert cache.get(("u", "a")) == "aaaa" and cache.get(("u", "c")) == "cccc"
    cache.put(("u", "d"), "x" * 11)  # larger than the whole cache: not kept
    assert cache.get(("u", "d")) is None


def test_which_providers_get_a_files_api(sqlite_url: str) -> None:
    def files_for(**overrides: object) -> ProviderFiles | None:
        settings = make_settings(sqlite_url, **overrides)
        return provider_files(settings, build_model_client(settings))

    openai = files_for(model_provider="openai", openai_api_key="k")
    assert openai is not None and openai.key == "openai https://api.openai.com/v1"
    assert (openai.purpose("image/png"), openai.purpose("application/pdf")) == (
        "vision",
        "user_data",
    )
    assert files_for(model_provider="openai", openai_base_url="http://localhost:11434/v1") is None
    assert files_for(
        model_provider="openai", openai_base_url="http://localhost:1/v1", model_files_api="on"
    )
    assert files_for(model_provider="openai", openai_api_key="k", model_files_api="off") is None
    assert files_for(model_provider="fake") is None
    azure = files_for(
        model_provider="azure",
        azure_openai_endpoint="https://r.openai.azure.com",
        azure_openai_api_key="k",
        openai_api_version="2025-04-01-preview",
    )
    assert azure is not None and azure.key.startswith("azure https://r.openai.azure.com")
    assert azure.purpose("application/pdf") == "assistants" and not azure.takes_images
    assert route("image/png", "responses", azure) == "image"
    assert route("application/pdf", "responses", azure) == "file"
    assert route("image/png", "responses", openai) == "file"
    assert route("image/png", "chat_completions", openai) == "image"
    assert route("application/pdf", "chat_completions", None) == "refuse"
    assert route("text/plain", "chat_completions", openai) == "text"
