"""One JSON error shape for every failure: `{"error": code, "message": reason}`."""

from __future__ import annotations

import logging

from chatkit.store import NotFoundError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.store.attachments import AttachmentRejected
from app.store.errors import OUTAGE_MESSAGE, is_outage

logger = logging.getLogger(__name__)

RETRY_AFTER_OUTAGE_SECONDS = 5


class ApiError(Exception):
    """An error a client can act on, with its HTTP status and a stable code."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class BadRequest(ApiError):
    status_code, code = 400, "bad_request"


class Unauthorized(ApiError):
    status_code, code = 401, "unauthorized"


class Forbidden(ApiError):
    status_code, code = 403, "forbidden"


class NotFound(ApiError):
    status_code, code = 404, "not_found"


class AttachmentApiError(ApiError):
    """An `AttachmentRejected` with its own status (400, 409, 413 or 415)."""

    def __init__(self, exc: AttachmentRejected) -> None:
        super().__init__(str(exc))
        self.status_code = exc.status_code
        self.code = exc.code


class NotImplementedApiError(ApiError):
    status_code, code = 501, "not_implemented"


def error_body(code: str, message: str) -> dict[str, str]:
    return {"error": code, "message": message}


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
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(ValidationError)
    async def _validation_error(_: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse(
            error_body("invalid_request", describe_validation_error(exc)), status_code=400
        )

    @app.exception_handler(RequestValidationError)
    async def _request_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "Invalid request"}
        location = ".".join(str(part) for part in first["loc"])
        return JSONResponse(
            error_body("invalid_request", f"{location}: {first['msg']}"), status_code=400
        )

    @app.exception_handler(NotFoundError)
    async def _not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse(error_body("not_found", str(exc) or "Not found"), status_code=404)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body("http_error", str(exc.detail)),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("Unhandled error", exc_info=exc)
        return JSONResponse(
            error_body("internal_error", "Something went wrong on our side."), status_code=500
        )

    @app.exception_handler(OSError)
    @app.exception_handler(SQLAlchemyError)
    async def _database_error(request: Request, exc: Exception) -> JSONResponse:
        # An outage (a restart, a failover) is transient: say so, and when to retry. Any other
        # database error is a bug.
        if not is_outage(exc):
            return await _unexpected(request, exc)
        logger.warning("Database unavailable: %s", type(exc).__name__)
        return JSONResponse(
            error_body("database_unavailable", OUTAGE_MESSAGE),
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_OUTAGE_SECONDS)},
        )
