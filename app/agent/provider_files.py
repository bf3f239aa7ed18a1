"""The model provider's Files API: attachments uploaded once, then referred to by file id.

OpenAI and Azure OpenAI have one; other OpenAI-compatible servers (Ollama, vLLM, OpenRouter...)
do not, and get the attachments inline (`MODEL_FILES_API`: `auto` decides by the provider).

Purposes are the ones each provider documents for model input: on OpenAI `vision` for images and
`user_data` for other files; Azure OpenAI documents `assistants` for file input and takes images
as URLs or base64 only, so there images stay inline.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import openai
from openai import AsyncAzureOpenAI, AsyncOpenAI
from openai.types import FilePurpose

from app.config import Settings
from app.store.model_files import ProviderFile

if TYPE_CHECKING:
    from app.agent.model import ModelClient

logger = logging.getLogger(__name__)

OPENAI_HOST = "api.openai.com"
DELETE_TIMEOUT_SECONDS = 10.0
"""How long a deletion waits for the provider: it runs inside the user's delete request."""
MAX_PROVIDER_KEY = 255


def provider_key(client: AsyncOpenAI) -> str:
    """Which Files API a file id belongs to: the provider and its base URL (ids of one do not
    exist in another). A very long URL is shortened with its hash."""
    kind = "azure" if isinstance(client, AsyncAzureOpenAI) else "openai"
    key = f"{kind} {str(client.base_url).rstrip('/')}"
    if len(key) <= MAX_PROVIDER_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{key[: MAX_PROVIDER_KEY - 33]}#{digest}"


@dataclass(frozen=True, slots=True)
class ProviderFiles:
    """Uploads, and deletes, attachments' copies at the provider."""

    client: AsyncOpenAI
    key: str
    azure: bool

    @property
    def takes_images(self) -> bool:
        """Whether images go by file id (Azure documents only URLs and base64 for images)."""
        return not self.azure

    def purpose(self, mime_type: str) -> FilePurpose:
        if self.azure:
            return "assistants"
        return "vision" if mime_type.startswith("image/") else "user_data"

    async def upload(self, name: str, mime_type: str, data: bytes) -> str:
        """The new file's id; raises the provider's `openai.APIError` if it refuses."""
        created = await self.client.files.create(
            file=(name, data, mime_type), purpose=self.purpose(mime_type)
        )
        return created.id

    async def delete(self, copies: Sequence[ProviderFile]) -> None:
        """Delete copies at this provider, best effort: failures are logged, never raised.

        Copies made at another provider (the configuration changed since) cannot be reached.
        """
        ours = [copy.file_id for copy in copies if copy.provider == self.key]
        for copy in copies:
            if copy.provider != self.key:
                logger.warning(
                    "Provider file %s left at %s: not the configured provider",
                    copy.file_id,
                    copy.provider,
                )
        try:
            async with asyncio.timeout(DELETE_TIMEOUT_SECONDS):
                await asyncio.gather(*(self._delete_one(file_id) for file_id in ours))
        except TimeoutError:
            logger.warning("Provider file deletion timed out: %s may be left", ", ".join(ours))

    async def _delete_one(self, file_id: str) -> None:
        try:
            await self.client.files.delete(file_id)
        except openai.NotFoundError:
            logger.info("Provider file %s was already gone", file_id)
        except openai.APIError as exc:
            logger.warning("Could not delete provider file %s: %s", file_id, exc)
        else:
            logger.info("Deleted provider file %s", file_id)


def provider_files(settings: Settings, model_client: ModelClient | None) -> ProviderFiles | None:
    """The Files API to use (`MODEL_FILES_API`), or `None` to send attachments inline.

    `auto`: Azure OpenAI, and OpenAI itself (no `OPENAI_BASE_URL`, or one on api.openai.com).
    """
    if model_client is None or settings.model_files_api == "off":
        return None
    client = model_client.client
    azure = isinstance(client, AsyncAzureOpenAI)
    if settings.model_files_api == "auto" and not azure:
        base_url = settings.openai_base_url
        if base_url is not None and urlsplit(base_url).hostname != OPENAI_HOST:
            return None
    return ProviderFiles(client=client, key=provider_key(client), azure=azure)
