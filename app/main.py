"""The ASGI application: `app.main:app`, built by `create_app()`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.cleanup import periodic_cleanup
from app.config import Settings, load_settings
from app.http.edge import add_edge_middleware
from app.http.errors import register_exception_handlers
from app.http.request_id import RequestIdMiddleware
from app.http.routes import attachments, chatkit, health, playground, turns
from app.logging import configure_logging
from app.services import Services


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    """Build the application; settings are read (and validated) here, not at import.

    The objects it serves with are built here too (`Services`), or given: tests hand in their
    own to look inside.
    """
    settings = services.settings if services else settings or load_settings()
    configure_logging(settings.log_level)  # before building: building may warn
    services = services or Services.build(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with services.lifespan(), periodic_cleanup(services.attachments, settings):
            yield

    app = FastAPI(title="ChatKit backend", lifespan=lifespan)
    app.state.services = services  # for the routes' dependencies (app/http/deps.py)
    register_exception_handlers(app)
    app.include_router(chatkit.router)
    app.include_router(attachments.router)
    app.include_router(turns.router)
    app.include_router(health.router)
    if settings.playground_on:
        app.include_router(playground.router)
    add_edge_middleware(app, settings, services.identity, services.rate_limiter)
    app.add_middleware(RequestIdMiddleware)  # outermost: every log line of a request has its id
    return app


def __getattr__(name: str) -> FastAPI:
    """`app.main:app`, built on first access so that importing this module reads no settings."""
    if name == "app":
        return create_app()
    raise AttributeError(name)
