"""One error hierarchy: failures a client can act on, each with its HTTP status and a stable code.

Any layer raises them (the store refuses an upload, the edge refuses a token, the server a
request that cannot apply), and one handler (`app.http.errors`) answers every one of them as
`{"error": code, "message": message}`. The message is for people: it never carries internals.

A new kind of failure is a subclass, here when several layers raise it, else beside the code
that does (`AttachmentTooLarge` in the store, `Unauthenticated` at the edge): it names its
`status` and `code`, and nothing else needs to know about it.
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
    """A request that cannot apply as it was sent (a 400 with the reason): a list too long, an
    upload that is not a form, tool output with no tool call waiting for it."""

    status, code = 400, "bad_request"


class NotFound(AppError):
    status, code = 404, "not_found"


class PayloadTooLarge(AppError):
    """A body or a file over its limit."""

    status, code = 413, "payload_too_large"


class Unavailable(AppError):
    """A dependency (the database, file storage) is down: worth retrying later."""

    status, code = 503, "unavailable"
