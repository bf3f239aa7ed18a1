"""FastAPI dependencies: the application's `Services`, and the caller's identity.

All `async def`: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per
dependency on every request for what is a dictionary lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.context import RequestContext
from app.http.auth.base import Unauthenticated
from app.services import Services


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_caller(request: Request) -> RequestContext | None:
    """The identity the edge resolved for this request, if the request carried one."""
    context: RequestContext | None = request.scope.get("state", {}).get("context")
    return context


async def get_context(
    caller: Annotated[RequestContext | None, Depends(get_caller)],
) -> RequestContext:
    """The caller, who must be known."""
    if caller is None:
        raise Unauthenticated("Authentication required")
    return caller


ServicesDep = Annotated[Services, Depends(get_services)]
CallerDep = Annotated[RequestContext | None, Depends(get_caller)]
ContextDep = Annotated[RequestContext, Depends(get_context)]
