"""What the JWT methods (`jwks`, `hs256`) share: the claim checks and the caller they make.

The algorithm always comes from the method, never from the token alone: a token is decoded only
with the algorithms of the method that recognized it, so `none` and HS256 signed with a public
key are refused.
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
from app.context import RequestContext
from app.http.auth.base import (
    MAX_USER_ID_LENGTH,
    AuthRequest,
    InvalidToken,
    is_valid_user_id,
    known_tier,
)

REQUIRED_CLAIMS = ["exp", "iat", "sub"]
TIME_CLAIMS = ("exp", "iat", "nbf")


class JwtAuthenticator:
    """A method for `Authorization: Bearer <JWT>` signed with one of `algorithms`.

    A subclass says which algorithms it takes and where the verifying key comes from.
    """

    bearer = True
    algorithms: frozenset[str] = frozenset()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.issuer = settings.auth_jwt_issuer or None
        self.audience: list[str] | None = settings.auth_jwt_audience or None
        self.leeway = settings.auth_jwt_leeway_seconds

    def recognizes(self, request: AuthRequest) -> bool:
        return request.token_algorithm in self.algorithms

    async def key(self, request: AuthRequest) -> tuple[Any, str]:
        """The key that verifies the request's token, and its algorithm."""
        raise NotImplementedError

    async def authenticate(self, request: AuthRequest) -> RequestContext:
        key, algorithm = await self.key(request)
        assert request.bearer_token is not None  # recognized
        claims = self.verify(request.bearer_token, key, algorithm)
        return request.context(
            claims["sub"],
            "jwt",
            email=claims.get("email"),
            name=claims.get("name"),
            tier=known_tier(self.settings, claims.get(self.settings.auth_tier_claim)),
            claims=claims,
        )

    def verify(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        """Check signature, `exp`/`iat`/`nbf`, `sub`, and `iss`/`aud` when configured."""
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
