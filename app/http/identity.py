"""Resolves who is calling into a `RequestContext`, once per request, in pure ASGI middleware.

Precedence is fixed: an `Authorization: Bearer` token wins, and a present-but-invalid token is a
401 even when identity headers are present. Without a token, the `X-User-*` headers count only
with `AUTH_TRUST_USER_HEADERS=true` and a matching `X-Proxy-Secret` (not required in development).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.context import RequestContext
from app.http.asgi import is_guarded, is_under_chatkit, send_error
from app.http.tokens import MAX_USER_ID_LENGTH, InvalidToken, TokenVerifier, is_valid_user_id

logger = logging.getLogger(__name__)


def public_base_url(settings: Settings, headers: Headers, scope: Scope) -> str:
    """`PUBLIC_BASE_URL`, else the URL the client used (uvicorn applies forwarded headers)."""
    if settings.public_base_url:
        return settings.public_base_url
    scheme = scope.get("scheme", "http")
    host = headers.get("host", "localhost")
    return f"{scheme}://{host}"


class Unauthenticated(Exception):
    """No acceptable identity; becomes a 401 with a reason and a `WWW-Authenticate` challenge."""

    def __init__(self, message: str, *, code: str = "unauthorized", token_error: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.token_error = token_error

    @property
    def challenge(self) -> str:
        if not self.token_error:
            return "Bearer"
        description = "".join(c for c in self.message if " " <= c <= "~" and c not in '"\\')
        return f'Bearer error="invalid_token", error_description="{description}"'


class IdentityResolver:
    """Headers in, `RequestContext` (or `None` when no credentials were sent) out."""

    def __init__(self, settings: Settings, verifier: TokenVerifier) -> None:
        self.settings = settings
        self.verifier = verifier
        secret = settings.auth_proxy_secret
        self.proxy_secret = secret.get_secret_value().encode() if secret else None

    async def resolve(self, headers: Headers, scope: Scope) -> RequestContext | None:
        authorization = headers.get("authorization")
        if authorization is not None:
            return await self._from_token(authorization, headers, scope)
        if headers.get("x-user-id") is not None and self.settings.auth_trust_user_headers:
            return self._from_headers(headers, scope)
        return None

    async def _from_token(
        self, authorization: str, headers: Headers, scope: Scope
    ) -> RequestContext:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthenticated("Use `Authorization: Bearer <token>`", token_error=True)
        token = token.strip()
        if not token:
            raise Unauthenticated("The Bearer token is empty", token_error=True)
        if not self.verifier.enabled:
            raise Unauthenticated(
                "This server does not accept Bearer tokens (no AUTH_JWKS_URL or AUTH_JWT_SECRET)",
                token_error=True,
            )
        try:
            claims = await self.verifier.verify(token)
        except InvalidToken as exc:
            raise Unauthenticated(str(exc), code="invalid_token", token_error=True) from None
        return RequestContext(
            user_id=claims["sub"],
            auth_method="jwt",
            email=_text(claims.get("email")),
            name=_text(claims.get("name")),
            tier=self._tier(claims.get(self.settings.auth_tier_claim)),
            locale=headers.get("accept-language"),
            base_url=public_base_url(self.settings, headers, scope),
            claims=claims,
        )

    def _from_headers(self, headers: Headers, scope: Scope) -> RequestContext:
        development = self.settings.environment == "development"
        if self.proxy_secret is not None or not development:
            sent = headers.get("x-proxy-secret", "").encode()
            if self.proxy_secret is None or not hmac.compare_digest(sent, self.proxy_secret):
                raise Unauthenticated("Identity headers need a valid X-Proxy-Secret")
        user_id = headers["x-user-id"].strip()
        if not is_valid_user_id(user_id):
            raise Unauthenticated(
                f"X-User-Id must be 1 to {MAX_USER_ID_LENGTH} printable characters"
            )
        return RequestContext(
            user_id=user_id,
            auth_method="headers" if self.proxy_secret is not None else "development",
            email=_text(headers.get("x-user-email")),
            name=_text(headers.get("x-user-name")),
            tier=self._tier(headers.get("x-user-tier")),
            locale=headers.get("accept-language"),
            base_url=public_base_url(self.settings, headers, scope),
        )

    def _tier(self, claimed: object) -> str:
        tier = self.settings.known_tier(claimed)
        if claimed and tier != claimed:
            # The claimed value stays out of the logs: it is whatever the caller wrote.
            logger.info(
                "A tier RATE_LIMIT_DAILY_MESSAGES does not name counts as AUTH_DEFAULT_TIER (%s)",
                tier,
            )
        return tier


class IdentityMiddleware:
    """Puts the caller's `RequestContext` in `scope["state"]["context"]`.

    `/chatkit` and direct uploads answer 401 themselves when there is no identity; other
    `/chatkit/...` URLs (signed attachment links) resolve one when credentials are sent and
    otherwise let their route decide. Nothing else is touched.
    """

    def __init__(self, app: ASGIApp, resolver: IdentityResolver) -> None:
        self.app = app
        self.resolver = resolver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_under_chatkit(scope):
            await self.app(scope, receive, send)
            return
        try:
            context = await self.resolver.resolve(Headers(scope=scope), scope)
            if context is None and is_guarded(scope):
                raise Unauthenticated(
                    "Authentication required: send `Authorization: Bearer <token>`"
                )
        except Unauthenticated as exc:
            logger.info("Refused %s %s: %s", scope["method"], scope["path"], exc.code)
            await send_error(send, 401, exc.code, exc.message, {"WWW-Authenticate": exc.challenge})
            return
        if context is not None:
            scope.setdefault("state", {})["context"] = context
        await self.app(scope, receive, send)


def _text(value: Any) -> str | None:
    """Display text (email, name) as given, if it is printable; anything else is dropped."""
    return value if isinstance(value, str) and value and value.isprintable() else None
