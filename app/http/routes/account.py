"""The caller's own usage and data, beside the protocol route.

- `GET /chatkit/usage`: tokens today and this month, by model, cost, and the quota left;
- `GET /chatkit/export`: a zip of everything the caller owns, streamed;
- `DELETE /chatkit/me`: erase all of it, confirmed by `{"confirm": "erase my data"}` or the
  header `X-Confirm-Erase: erase my data`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from app.errors import BadRequest
from app.http.deps import ContextDep, ServicesDep

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/chatkit", tags=["account"])

ERASE_CONFIRMATION = "erase my data"
CONFIRM_HEADER = "X-Confirm-Erase"
MAX_CONFIRM_BODY_BYTES = 1024


@router.get("/usage")
async def usage(services: ServicesDep, context: ContextDep) -> JSONResponse:
    return JSONResponse(await services.quota.report(context))


@router.get("/export")
async def export(services: ServicesDep, context: ContextDep) -> StreamingResponse:
    """The zip streams as it is read; what it will hold is read first, so an outage is a 503."""
    plan = await services.userdata.plan_export(context.user_id)
    logger.info("Exporting a user's data: %s", plan.counts)
    filename = f"chatkit-export-{datetime.now(UTC):%Y%m%d-%H%M%S}.zip"
    return StreamingResponse(
        services.userdata.export(plan),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@router.delete("/me")
async def erase(request: Request, services: ServicesDep, context: ContextDep) -> Response:
    """Erase every row the caller owns, then their stored files; answers the counts."""
    await _require_confirmation(request)
    counts = await services.userdata.erase(context.user_id)
    logger.info("Erased a user's data: %s", counts)
    return JSONResponse({"erased": counts})


async def _require_confirmation(request: Request) -> None:
    """The header, or a small JSON body, must say `erase my data`: no erasure by accident."""
    if request.headers.get(CONFIRM_HEADER, "").strip().lower() == ERASE_CONFIRMATION:
        return
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CONFIRM_BODY_BYTES:
            raise BadRequest(f"The body may be at most {MAX_CONFIRM_BODY_BYTES} bytes")
    try:
        confirm = json.loads(body).get("confirm") if body.strip() else None
    except (ValueError, AttributeError, RecursionError):
        raise BadRequest('The body must be JSON: {"confirm": "erase my data"}') from None
    if not isinstance(confirm, str) or confirm.strip().lower() != ERASE_CONFIRMATION:
        raise BadRequest(
            f'Erasing all your data needs confirmation: send {{"confirm": "{ERASE_CONFIRMATION}"}}'
            f" or the header {CONFIRM_HEADER}: {ERASE_CONFIRMATION}"
        )
