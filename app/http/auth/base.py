"""What an authentication method is, and what every method shares.

A request's credentials are read once into an `AuthRequest`. The methods named in
`AUTH_METHODS` are tried in that order, and the first that recognizes the request's credentials
decides: it returns the caller, or refuses with a 401 (`app/http/auth/identity.py`).

A new method is one class with the `Authenticator` shape, in a module of its own, and one line
in `METHODS` (`app/http/auth/identity.py`); then name it in `AUTH_METHODS`.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any, Protocol

import jwt
from jwt.exceptions import PyJWTError
from starlette.datastructures import Headers

from app.config import Settings
from app.context import RequestContext
from app.errors import AppError

logger = logging.getLogger(__name__)

MAX_USER_ID_LENGTH = 255  # the `user_id` columns' width


class Authenticator(Protocol):
    """One way to learn who is calling."""

    bearer: bool
    """Whether it reads `Authorization: Bearer` tokens."""

    def recognizes(self, request: AuthRequest) -> bool:
        """Whether the request carries this method's credentials (then this method decides)."""
        ...

    async def authenticate(self, request: AuthRequest) -> RequestContext:
        """The caller, or `Unauthenticated`/`InvalidToken` when the credentials prove nothing."""
        ...


class Unauthenticated(AppError):
    """No acceptable identity: a 401 that asks for a Bearer token."""

    status, code = 401, "unauthorized"

    def __init__(self, message: str, *, challenge: str = "Bearer") -> None:
        super().__init__(message, headers={"WWW-Authenticate": challenge})


class InvalidToken(Unauthenticated):
    """A token that does not prove who is calling; the message is safe to show the client."""

    def __init__(self, message: str, *, code: str = "invalid_token") -> None:
        description = "".join(c for c in message if " " <= c <= "~" and c not in '"\\')
        super().__init__(
            message, challenge=f'Bearer error="invalid_token", error_description="{description}"'
        )
        self.code = code


class AuthRequest:
    """A request's credentials, as the methods read them: each parsed once, when first asked."""

    def __init__(self, headers: Headers, base_url: str, *, elsewhere: str | None = None) -> None:
        self.headers = headers
        self.base_url = base_url
        self.elsewhere = elsewhere
        """Why the client is not on this machine (`app/http/auth/local.py`); None when it is."""

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @cached_property
    def bearer_token(self) -> str | None:
        """The token of `Authorization: Bearer <token>`; None when there is no such token."""
        scheme, _, token = (self.authorization or "").partition(" ")
        return (token.strip() or None) if scheme.lower() == "bearer" else None

    @cached_property
    def token_header(self) -> dict[str, Any] | None:
        """The bearer token's JWT header, unverified; None when it is not a JWT."""
        if self.bearer_token is None:
            return None
        try:
            return jwt.get_unverified_header(self.bearer_token)
        except PyJWTError:
            return None

    @property
    def token_algorithm(self) -> str | None:
        alg = (self.token_header or {}).get("alg")
        return alg if isinstance(alg, str) else None

    def context(
        self,
        user_id: str,
        auth_method: str,
        *,
        email: object = None,
        name: object = None,
        tier: str,
        claims: dict[str, Any] | None = None,
    ) -> RequestContext:
        """The caller, with what every method adds: browser locale and this server's URL."""
        return RequestContext(
            user_id=user_id,
            auth_method=auth_method,
            email=displayable(email),
            name=displayable(name),
            tier=tier,
            locale=self.headers.get("accept-language"),
            base_url=self.base_url,
            claims=claims or {},
        )


def is_valid_user_id(value: object) -> bool:
    """1 to 255 printable characters (no control characters, no lone surrogates), not all blank.

    Every store query is scoped by it, and PostgreSQL text cannot hold NUL or lone surrogates.
    """
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_USER_ID_LENGTH
        and value.isprintable()
        and not value.isspace()
    )


def known_tier(settings: Settings, claimed: object) -> str:
    """The claimed tier if the quotas name it, else `AUTH_DEFAULT_TIER` (see `Settings`)."""
    tier = settings.known_tier(claimed)
    if claimed and tier != claimed:
        # The claimed value stays out of the logs: it is whatever the caller wrote.
        logger.info(
            "A tier RATE_LIMIT_DAILY_MESSAGES does not name counts as AUTH_DEFAULT_TIER (%s)",
            tier,
        )
    return tier


def displayable(value: object) -> str | None:
    """Display text (email, name) as given, if it is printable; anything else is dropped."""
    return value if isinstance(value, str) and value and value.isprintable() else None
