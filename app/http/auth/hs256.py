"""`hs256`: tokens an app mints itself, signed with a shared secret (`AUTH_JWT_SECRET`)."""

from __future__ import annotations

from typing import Any

from app.config import ConfigurationError, Settings
from app.http.auth.base import AuthRequest
from app.http.auth.tokens import JwtAuthenticator


class SharedSecretAuthenticator(JwtAuthenticator):
    algorithms = frozenset({"HS256"})

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        if settings.auth_jwt_secret is None:
            raise ConfigurationError("AUTH_METHODS names hs256, which needs AUTH_JWT_SECRET")
        self.secret = settings.auth_jwt_secret.get_secret_value()

    async def key(self, request: AuthRequest) -> tuple[Any, str]:
        return self.secret, "HS256"
