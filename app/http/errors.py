"""The one place failures become responses: `{"error": code, "message": reason}`.

`AppError`s (`app.errors`) carry their own status and code. The few exceptions that are not
ours are translated once, in `as_app_error`: the SDK's `NotFoundError` (404), pydantic's and
FastAPI's validation errors (400), Starlette's HTTP errors, a database outage (503, only when
`is_outage` says so), and anything else (500, logged with its traceback). Route errors reach
`handle_error` through FastAPI's exception handlers; the edge middleware answers its refusals
with `refuse`, which renders the same body.
"""

from __future__ import annotations

import logging

from chatkit.store import NotFoundError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from app.errors import AppError, BadRequest, NotFound
from app.store.errors import DatabaseUnavailable, is_outage

logger = logging.getLogger(__name__)

HANDLED = (
    AppError,
    ValidationError,
    RequestValidationError,
    NotFoundError,
    HTTPException,
    SQLAlchemyError,
    OSError,
    Exception,
)
"""Registered one by one: FastAPI has defaults for some, and a handler for `Exception` alone
runs outside the exception middleware (Starlette re-raises the error after answering)."""


class InvalidRequest(BadRequest):
    """The body does not match the protocol (malformed JSON, a missing or wrong-typed field)."""

    code = "invalid_request"


class HttpError(AppError):
    """Starlette's own errors (404 for an unknown path, 405, ...), kept as they are."""

    code = "http_error"

    def __init__(self, exc: HTTPException) -> None:
        super().__init__(str(exc.detail), headers=exc.headers)
        self.status = exc.status_code


def as_app_error(exc: Exception) -> AppError:
    """What the client is told about `exc`."""
    match exc:
        case AppError():
            return exc
        case ValidationError():
            return InvalidRequest(describe_validation_error(exc))
        case RequestValidationError():
            first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "Invalid request"}
            location = ".".join(str(part) for part in first["loc"])
            return InvalidRequest(f"{location}: {first['msg']}")
        case NotFoundError():
            return NotFound(str(exc) or "Not found")
        case HTTPException():
            return HttpError(exc)
        case _ if is_outage(exc):
            # A restart or a failover is transient: say so, and when to retry. Any other
            # database error is a bug.
            logger.warning("Database unavailable: %s", type(exc).__name__)
            return DatabaseUnavailable()
        case _:
            logger.exception("Unhandled error", exc_info=exc)
            return AppError("Something went wrong on our side.")


def error_response(error: AppError) -> JSONResponse:
    return JSONResponse(
        {"error": error.code, "message": error.message},
        status_code=error.status,
        headers=error.headers,
    )


async def handle_error(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, AppError) and exc.status >= 500:
        logger.warning("%s: %s", exc.code, exc)  # e.g. what the file storage answered
    return error_response(as_app_error(exc))


async def refuse(error: AppError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer from pure ASGI middleware, before the application runs, as a route would."""
    logger.info("Refused %s %s: %s", scope["method"], scope["path"], error.code)
    await error_response(error)(scope, receive, send)


def describe_validation_error(exc: ValidationError) -> str:
    """A short reason: the first problem, with where it is (`params.thread_id: Field required`)."""
    errors = exc.errors(include_url=False)
    if not errors:
        return "Invalid request"
    first = errors[0]
    if first["type"] == "json_invalid":
        return f"Body is not valid JSON: {first['ctx'].get('error', first['msg'])}"
    location = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{location or 'body'}: {first['msg']}{more}"


def register_exception_handlers(app: FastAPI) -> None:
    for kind in HANDLED:
        app.add_exception_handler(kind, handle_error)
