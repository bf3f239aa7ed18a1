"""One error hierarchy: failures a client can act on, each with its HTTP status and a stable code.

Any layer raises them (the store refuses an upload, the edge refuses a token, the server a
request that cannot apply), and one handler (`app.http.errors`) answers every one of them as
`{"error": code, "message": message}`. The message is for people: it never carries internals.
A new kind of failure is a subclass here, or beside the code that raises it.
"""

from __future__ import annotations

from collections.abc import Mapping


class AppError(Exception):
    """A failure the client can act on: `status` and `code` say which, `message` says why."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers) if headers else None


class BadRequest(AppError):
    status, code = 400, "bad_request"


class InvalidRequest(BadRequest):
    """The body does not match the protocol (malformed JSON, a missing or wrong-typed field)."""

    code = "invalid_request"


class Unauthorized(AppError):
    status, code = 401, "unauthorized"


class Forbidden(AppError):
    status, code = 403, "forbidden"


class NotFound(AppError):
    status, code = 404, "not_found"


class Conflict(AppError):
    status, code = 409, "conflict"


class PayloadTooLarge(AppError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(AppError):
    status, code = 415, "unsupported_media_type"


class TooManyRequests(AppError):
    status, code = 429, "rate_limited"


class HeadersTooLarge(AppError):
    status, code = 431, "headers_too_large"


class NotSupported(AppError):
    """A request type this server does not implement."""

    status, code = 501, "not_implemented"


class Unavailable(AppError):
    """A dependency (the database, file storage) is down: worth retrying later."""

    status, code = 503, "unavailable"
