"""FastAPI dependencies: the application's `Services`, and the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.context import RequestContext
from app.http.auth.base import Unauthenticated
from app.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_caller(request: Request) -> RequestContext | None:
    """The identity the edge resolved for this request, if the request carried one."""
    context: RequestContext | None = request.scope.get("state", {}).get("context")
    return context


def get_context(caller: Annotated[RequestContext | None, Depends(get_caller)]) -> RequestContext:
    """The caller, who must be known."""
    if caller is None:
        raise Unauthenticated("Authentication required")
    return caller


ServicesDep = Annotated[Services, Depends(get_services)]
CallerDep = Annotated[RequestContext | None, Depends(get_caller)]
ContextDep = Annotated[RequestContext, Depends(get_context)]
