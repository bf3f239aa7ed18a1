"""The ASGI application: `app.main:app`, built by `create_app()`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.agent.agent import Assistant, build_model
from app.config import Settings
from app.http.errors import register_exception_handlers
from app.http.identity import IdentityMiddleware
from app.http.routes import chatkit, health
from app.server import ChatKitBackend
from app.store.attachments import DatabaseAttachmentStore
from app.store.db import create_engine, migration_head
from app.store.store import SQLAlchemyStore


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; settings are read (and validated) here, not at import."""
    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        store = SQLAlchemyStore(engine)
        app.state.settings = settings
        app.state.engine = engine
        app.state.store = store
        app.state.model = build_model(settings)
        app.state.server = ChatKitBackend(
            store,
            DatabaseAttachmentStore(store, settings.public_base_url),
            Assistant(settings, app.state.model),
        )
        app.state.migration_head = migration_head()
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(title="ChatKit backend", lifespan=lifespan)
    register_exception_handlers(app)
    app.include_router(chatkit.router)
    app.include_router(health.router)
    app.add_middleware(IdentityMiddleware, settings=settings)
    return app


def __getattr__(name: str) -> FastAPI:
    """`app.main:app`, built on first access so that importing this module reads no settings."""
    if name == "app":
        return create_app()
    raise AttributeError(name)
