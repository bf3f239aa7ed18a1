"""Verifies Better Auth JWTs (JWKS, asymmetric) and self-minted HS256 tokens.

The algorithm always comes from the key, never from the token alone: a JWKS key verifies only
with its own `alg` (so `none` and HS256-signed-with-the-public-key are refused), and HS256 is
accepted only when `AUTH_JWT_SECRET` is set.
"""

from __future__ import annotations

from typing import Any

import jwt
from jwt.exceptions import (
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAudienceError,
    InvalidIssuerError,
    MissingRequiredClaimError,
    PyJWTError,
)

from app.config import Settings
from app.http.jwks import ASYMMETRIC_ALGORITHMS, JwksCache

MAX_USER_ID_LENGTH = 255  # the `user_id` columns' width
REQUIRED_CLAIMS = ["exp", "iat", "sub"]
TIME_CLAIMS = ("exp", "iat", "nbf")


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


class InvalidToken(Exception):
    """A token that does not prove who the caller is; the message is safe to show the client."""


class TokenVerifier:
    """Turns a compact JWT into its verified claims, or raises `InvalidToken`."""

    def __init__(self, settings: Settings, jwks: JwksCache | None) -> None:
        self.jwks = jwks
        self.secret = (
            settings.auth_jwt_secret.get_secret_value() if settings.auth_jwt_secret else None
        )
        self.issuer = settings.auth_jwt_issuer or None
        audiences = [a.strip() for a in (settings.auth_jwt_audience or "").split(",") if a.strip()]
        self.audience: list[str] | None = audiences or None
        self.leeway = settings.auth_jwt_leeway_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        jwks = None
        if settings.auth_jwks_url:
            jwks = JwksCache(
                settings.auth_jwks_url,
                cache_seconds=settings.auth_jwks_cache_seconds,
                unknown_kid_seconds=settings.auth_jwks_unknown_kid_seconds,
                min_refetch_seconds=settings.auth_jwks_min_refetch_seconds,
                timeout_seconds=settings.auth_jwks_timeout_seconds,
            )
        return cls(settings, jwks)

    @property
    def enabled(self) -> bool:
        return self.jwks is not None or self.secret is not None

    async def verify(self, token: str) -> dict[str, Any]:
        """Check signature, algorithm, `exp`/`iat`/`nbf`, `sub`, and `iss`/`aud` when configured."""
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError:
            raise InvalidToken("The token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg == "HS256" and self.secret is not None:
            return self._decode(token, self.secret, "HS256")
        if self.jwks is None or alg not in ASYMMETRIC_ALGORITHMS:
            raise InvalidToken(f"Tokens signed with {str(alg)[:20]!r} are not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("The token header has no key id (kid)")
        key = await self.jwks.get(kid)
        if key is None:
            raise InvalidToken("The token was signed with an unknown key")
        if key.algorithm_name != alg:
            raise InvalidToken(f"The token's key signs with {key.algorithm_name}, not {alg}")
        return self._decode(token, key.key, key.algorithm_name)

    def _decode(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS, "verify_aud": self.audience is not None},
            )
        except ExpiredSignatureError:
            raise InvalidToken("The token has expired") from None
        except ImmatureSignatureError:
            raise InvalidToken("The token is not valid yet") from None
        except InvalidIssuerError:
            raise InvalidToken("The token was issued by someone else (iss)") from None
        except InvalidAudienceError:
            raise InvalidToken("The token is meant for another audience (aud)") from None
        except MissingRequiredClaimError as exc:
            raise InvalidToken(f"The token has no {exc.claim!r} claim") from None
        except PyJWTError:
            raise InvalidToken("The token's signature or claims are invalid") from None
        except (TypeError, ValueError):  # e.g. a key of the wrong type for the algorithm
            raise InvalidToken("The token's signature or claims are invalid") from None
        for name in TIME_CLAIMS:
            # PyJWT reads "1767225600" as a date too; RFC 7519 says a NumericDate is a number.
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise InvalidToken(f"The token's {name!r} claim is not a number")
        if not is_valid_user_id(claims.get("sub")):
            raise InvalidToken(
                f"The token's subject (sub) must be 1 to {MAX_USER_ID_LENGTH} printable characters"
            )
        return claims
