"""`headers`: identity from a trusted proxy's `X-User-*` headers (`AUTH_TRUST_USER_HEADERS`).

Any browser can send these headers, so they count only with the proxy's shared secret in
`X-Proxy-Secret` (compared in constant time), which only development may go without, and then
only from clients on this machine (`app/http/auth/local.py`). They never
count on a request that carries an `Authorization` header: a token always decides, whatever the
order of `AUTH_METHODS`.
"""

from __future__ import annotations

import hmac

from app.config import ConfigurationError, Settings
from app.context import RequestContext
from app.http.auth.base import (
    MAX_USER_ID_LENGTH,
    AuthRequest,
    Unauthenticated,
    is_valid_user_id,
    known_tier,
)


class TrustedHeadersAuthenticator:
    bearer = False

    def __init__(self, settings: Settings) -> None:
        if not settings.auth_trust_user_headers:
            raise ConfigurationError(
                "AUTH_METHODS names headers, which needs AUTH_TRUST_USER_HEADERS=true"
            )
        self.settings = settings
        secret = settings.auth_proxy_secret
        self.proxy_secret = secret.get_secret_value().encode() if secret else None
        self.development = settings.environment == "development"

    def recognizes(self, request: AuthRequest) -> bool:
        return request.authorization is None and request.headers.get("x-user-id") is not None

    async def authenticate(self, request: AuthRequest) -> RequestContext:
        headers = request.headers
        if self.proxy_secret is not None or not self.development:
            sent = headers.get("x-proxy-secret", "").encode()
            if self.proxy_secret is None or not hmac.compare_digest(sent, self.proxy_secret):
                raise Unauthenticated("Identity headers need a valid X-Proxy-Secret")
        elif request.elsewhere is not None:
            raise Unauthenticated(request.elsewhere)
        user_id = headers["x-user-id"].strip()
        if not is_valid_user_id(user_id):
            raise Unauthenticated(
                f"X-User-Id must be 1 to {MAX_USER_ID_LENGTH} printable characters"
            )
        return request.context(
            user_id,
            "headers" if self.proxy_secret is not None else "development",
            email=headers.get("x-user-email"),
            name=headers.get("x-user-name"),
            tier=known_tier(self.settings, headers.get("x-user-tier")),
        )
