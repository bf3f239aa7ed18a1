"""Platform probes: `/healthz` (process up), `/readyz` (database reachable, schema at head; MCP
servers that are down are listed as degraded; development's demo defaults are named)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.http.deps import ServicesDep
from app.store.db import database_revision

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    head = services.migration_head
    try:
        revision = await database_revision(services.engine)
    except Exception as exc:  # any driver or network error means "not ready"
        logger.warning("Readiness check failed: %s", type(exc).__name__)
        return _unavailable(f"database unreachable ({type(exc).__name__})")
    if revision != head:
        return _unavailable(
            f"database schema at {revision or 'nothing'}, expected {head}: "
            "run `alembic upgrade head`"
        )
    body: dict[str, object] = {"status": "ready", "revision": revision}
    if notes := services.settings.demo_notes():
        body["demo"] = notes  # what development chose because nothing was configured
    # MCP servers: one that is down leaves out its tools, not chat (still 200).
    if tool_servers := services.assistant.tool_servers():
        body["mcp_servers"] = tool_servers
        body["degraded"] = [name for name, state in tool_servers.items() if state != "connected"]
    return JSONResponse(body)


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
