"""The ASGI application: `app.main:app`, built by `create_app()`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI

from app.agent.agent import start_assistant
from app.agent.config import load_agent_config
from app.agent.factory import AgentSetup
from app.agent.model import build_model, build_model_client
from app.cleanup import start_periodic_cleanup
from app.config import Settings, load_settings
from app.http.edge import add_edge_middleware
from app.http.errors import register_exception_handlers
from app.http.request_id import RequestIdMiddleware
from app.http.routes import attachments, chatkit, health, playground
from app.http.sse import OpenStreams
from app.logging import configure_logging
from app.server import ChatKitBackend
from app.store.attachments import create_stores
from app.store.db import create_engine, migration_head


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; settings are read (and validated) here, not at import."""
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    agent_config = load_agent_config(settings)  # AGENT_CONFIG, MCP_CONFIG: refused here if bad

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        store, attachment_store = create_stores(settings, engine)
        app.state.settings = settings
        app.state.engine = engine
        app.state.store = store
        app.state.attachments = attachment_store
        model_client = build_model_client(settings)
        app.state.model_client = model_client
        app.state.model = build_model(settings, model_client, agent_config.model)
        # The agent (AGENT_FACTORY's or the configured one) and its MCP servers, connected here.
        setup = AgentSetup(settings, agent_config, model_client, app.state.model)
        assistant = await start_assistant(setup)
        app.state.server = ChatKitBackend(store, attachment_store, assistant)
        app.state.migration_head = migration_head()
        app.state.streams = OpenStreams()
        cleanup = start_periodic_cleanup(attachment_store, settings)
        try:
            yield
        finally:
            # Interrupted streams save their partial replies before the database goes away.
            await app.state.streams.close()
            await assistant.aclose()  # MCP servers (and their subprocesses)
            if cleanup is not None:
                cleanup.cancel()
                with suppress(asyncio.CancelledError):
                    await cleanup
            await attachment_store.files.aclose()
            if model_client is not None:
                await model_client.aclose()
            await engine.dispose()

    app = FastAPI(title="ChatKit backend", lifespan=lifespan)
    register_exception_handlers(app)
    app.include_router(chatkit.router)
    app.include_router(attachments.router)
    app.include_router(health.router)
    if settings.playground_on:
        app.include_router(playground.router)
    add_edge_middleware(app, settings)
    app.add_middleware(RequestIdMiddleware)  # outermost: every log line of a request has its id
    return app


def __getattr__(name: str) -> FastAPI:
    """`app.main:app`, built on first access so that importing this module reads no settings."""
    if name == "app":
        return create_app()
    raise AttributeError(name)
