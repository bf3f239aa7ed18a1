"""Resolves who is calling into a `RequestContext`, once per request, in pure ASGI middleware."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.context import RequestContext


def public_base_url(settings: Settings, headers: Headers, scope: Scope) -> str:
    """`PUBLIC_BASE_URL`, else the URL the client used (uvicorn applies forwarded headers)."""
    if settings.public_base_url:
        return settings.public_base_url
    scheme = scope.get("scheme", "http")
    host = headers.get("host", "localhost")
    return f"{scheme}://{host}"


class IdentityMiddleware:
    """Puts the caller's `RequestContext` in `scope["state"]["context"]`.

    Development identity for now: the `X-User-Id` header. Routes that need a user get a 401
    from `get_context` when there is none.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            user_id = headers.get("x-user-id")
            if user_id:
                scope.setdefault("state", {})["context"] = RequestContext(
                    user_id=user_id,
                    auth_method="development",
                    email=headers.get("x-user-email"),
                    tier=headers.get("x-user-tier") or "free",
                    locale=headers.get("accept-language"),
                    base_url=public_base_url(self.settings, headers, scope),
                )
        await self.app(scope, receive, send)
