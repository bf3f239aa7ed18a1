"""FastAPI dependencies: the objects the lifespan put on `app.state`, and the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.context import RequestContext
from app.errors import Unauthorized
from app.http.sse import OpenStreams
from app.server import ChatKitBackend


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


def get_server(request: Request) -> ChatKitBackend:
    server: ChatKitBackend = request.app.state.server
    return server


def get_streams(request: Request) -> OpenStreams:
    streams: OpenStreams = request.app.state.streams
    return streams


def get_context(request: Request) -> RequestContext:
    """The identity the middleware resolved for this request."""
    context: RequestContext | None = getattr(request.state, "context", None)
    if context is None:
        raise Unauthorized("Authentication required", headers={"WWW-Authenticate": "Bearer"})
    return context


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
ServerDep = Annotated[ChatKitBackend, Depends(get_server)]
ContextDep = Annotated[RequestContext, Depends(get_context)]
StreamsDep = Annotated[OpenStreams, Depends(get_streams)]
