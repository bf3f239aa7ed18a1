"""The ASGI application: `app.main:app`, built by `create_app()`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.cleanup import periodic_cleanup
from app.config import Settings, load_settings
from app.http.edge import add_edge_middleware
from app.http.errors import register_exception_handlers
from app.http.request_id import RequestIdMiddleware
from app.http.routes import account, attachments, chatkit, health, playground, turns
from app.logging import configure_logging
from app.observability.install import observe
from app.runtime import tune_garbage_collection
from app.services import Services

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    """Build the application; settings are read (and validated) here, not at import.

    The objects it serves with are built here too (`Services`), or given: tests hand in their
    own to look inside.
    """
    settings = services.settings if services else settings or load_settings()
    configure_logging(settings.log_level)  # before building: building may warn
    services = services or Services.build(settings)
    for note in settings.demo_notes():
        logger.warning(note)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with services.lifespan(), periodic_cleanup(services.attachments, settings):
            yield

    app = FastAPI(title="ChatKit backend", lifespan=lifespan)
    app.state.services = services  # for the routes' dependencies (app/http/deps.py)
    register_exception_handlers(app)
    app.include_router(chatkit.router)
    chatkit.document_request_body(app)
    app.include_router(attachments.router)
    app.include_router(account.router)
    app.include_router(turns.router)
    app.include_router(health.router)
    if settings.playground_on:
        app.include_router(playground.router)
    add_edge_middleware(app, settings, services.identity, services.rate_limiter, services.schema)
    observe(app, services)  # metrics and traces, if enabled
    app.add_middleware(RequestIdMiddleware)  # outermost: every log line of a request has its id
    return app


def __getattr__(name: str) -> FastAPI:
    """`app.main:app`, built on first access so that importing this module reads no settings.

    Kept once built: uvicorn looks it up twice (a check, then to serve), which built (and
    logged) everything twice.
    """
    if name == "app":
        app: FastAPI = create_app()
        globals()["app"] = app
        tune_garbage_collection()  # a serving process: what exists now lives as long as it
        return app
    raise AttributeError(name)
