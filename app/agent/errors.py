"""Model failures as messages a person can act on (`CustomStreamError` → a ChatKit error event)."""

from __future__ import annotations

import logging

import httpx
import httpx2
import openai
from agents import MaxTurnsExceeded, ModelBehaviorError
from agents.exceptions import ModelTimeoutError
from chatkit.errors import CustomStreamError

from app.store.errors import OUTAGE_MESSAGE, is_outage

logger = logging.getLogger(__name__)

NOT_CONFIGURED = (
    "The assistant is not configured: set OPENAI_API_KEY (and optionally OPENAI_BASE_URL for an "
    "OpenAI-compatible server), or MODEL_PROVIDER=fake for the local demo model."
)
NOT_CONFIGURED_AZURE = (
    "The assistant is not configured: set AZURE_OPENAI_API_KEY (MODEL_PROVIDER=azure), or "
    "MODEL_PROVIDER=fake for the local demo model."
)
INTERRUPTED = "The model's answer was interrupted before it finished. Please try again."
UNKNOWN_MODEL = (
    "The model provider does not know the configured model: check CHATKIT_MODEL (the "
    "deployment name on Azure)."
)
NO_RESPONSES_API = (
    "The model server has no Responses API (HTTP 404 for /responses). If it speaks Chat "
    "Completions only, as Ollama, vLLM and most OpenAI-compatible servers do, set "
    "MODEL_API=chat_completions."
)
NO_CHAT_COMPLETIONS_API = (
    "The model server has no Chat Completions API (HTTP 404 for /chat/completions): check "
    "OPENAI_BASE_URL (it usually ends in /v1), or set MODEL_API=responses."
)


def not_configured(provider: str) -> str:
    """What to set when the provider's key is missing."""
    return NOT_CONFIGURED_AZURE if provider == "azure" else NOT_CONFIGURED


def _not_found(exc: openai.NotFoundError) -> str:
    """Tell an unknown model from a missing route: only the first names a model.

    OpenAI answers `model_not_found`, Azure `DeploymentNotFound`, Ollama and vLLM a message about
    the model; a server without the route answers a bare "Not Found" (or an HTML page).
    """
    said = f"{exc.code or ''} {exc.message}".lower()
    if "model" in said or "deployment" in said:
        return UNKNOWN_MODEL
    url = exc.request.url
    logger.warning("The model server at %s answered 404 for %s", url.host, url.path)
    if url.path.rstrip("/").endswith("/responses"):
        return NO_RESPONSES_API
    if url.path.rstrip("/").endswith("/chat/completions"):
        return NO_CHAT_COMPLETIONS_API
    return "The model server answered HTTP 404 (not found): check OPENAI_BASE_URL."


def _broke_mid_response(exc: BaseException) -> bool:
    """Whether the connection broke after the response began (not: could not connect)."""
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, httpx2.RemoteProtocolError | httpx2.ReadError):
            return True
        cause = cause.__cause__
    return False


def stream_error_for(exc: BaseException) -> CustomStreamError:
    """Translate a failure of the model or the run into a readable, retryable error."""
    match exc:
        case CustomStreamError():
            return exc
        case openai.AuthenticationError() | openai.PermissionDeniedError():
            # Azure's client sends its key as `api-key`, OpenAI's as a bearer token.
            key = "AZURE_OPENAI_API_KEY" if "api-key" in exc.request.headers else "OPENAI_API_KEY"
            return CustomStreamError(
                f"The model provider rejected the API key: check {key}.", allow_retry=False
            )
        case openai.RateLimitError():
            return CustomStreamError(
                "The model provider is rate limiting requests (HTTP 429). "
                "Wait a moment, then try again.",
                allow_retry=True,
            )
        case openai.NotFoundError():
            return CustomStreamError(_not_found(exc), allow_retry=False)
        case openai.APIStatusError() if exc.status_code >= 500:
            return CustomStreamError(
                f"The model provider had a server error (HTTP {exc.status_code}). "
                "Please try again.",
                allow_retry=True,
            )
        case openai.APIStatusError():
            return CustomStreamError(
                f"The model provider refused the request (HTTP {exc.status_code}).",
                allow_retry=True,
            )
        case openai.APITimeoutError() | ModelTimeoutError():
            return CustomStreamError(
                "The model took too long to answer. Please try again.", allow_retry=True
            )
        case openai.APIConnectionError() if _broke_mid_response(exc):
            return CustomStreamError(INTERRUPTED, allow_retry=True)
        case openai.APIConnectionError():
            return CustomStreamError(
                "Could not reach the model provider: check OPENAI_BASE_URL and the network, "
                "then try again.",
                allow_retry=True,
            )
        case httpx.TransportError() | httpx2.TransportError() | ConnectionError():
            return CustomStreamError(INTERRUPTED, allow_retry=True)
        case ModelBehaviorError() if "final response" in str(exc):
            return CustomStreamError(INTERRUPTED, allow_retry=True)
        case _ if is_outage(exc):
            return CustomStreamError(OUTAGE_MESSAGE, allow_retry=True)
        case MaxTurnsExceeded():
            return CustomStreamError(
                "The assistant took too many steps on this request. Try asking more simply.",
                allow_retry=True,
            )
        case _:
            return CustomStreamError(
                "The assistant failed to answer. Please try again.", allow_retry=True
            )
