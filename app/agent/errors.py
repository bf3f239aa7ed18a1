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
INTERRUPTED = "The model's answer was interrupted before it finished. Please try again."


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
            return CustomStreamError(
                "The model provider rejected the API key: check OPENAI_API_KEY.", allow_retry=False
            )
        case openai.RateLimitError():
            return CustomStreamError(
                "The model provider is rate limiting requests (HTTP 429). "
                "Wait a moment, then try again.",
                allow_retry=True,
            )
        case openai.NotFoundError():
            return CustomStreamError(
                "The model provider does not know the configured model: check CHATKIT_MODEL "
                "and OPENAI_BASE_URL.",
                allow_retry=False,
            )
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
