"""Who is calling: the configured methods, tried in order, once per request, in pure ASGI.

`AUTH_METHODS` names the methods in the order they are tried (by default every method whose
settings are present: jwks, hs256, headers). The first that recognizes the request's credentials
decides. A request whose `Authorization` header no method recognizes is a 401, never anonymous,
and the identity headers never count beside a token: a Bearer token wins, and a present but
invalid one is a 401 even when identity headers are present.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import ConfigurationError, Settings
from app.context import RequestContext
from app.http.asgi import is_guarded, is_under_chatkit
from app.http.auth.base import Authenticator, AuthRequest, InvalidToken, Unauthenticated
from app.http.auth.headers import TrustedHeadersAuthenticator
from app.http.auth.hs256 import SharedSecretAuthenticator
from app.http.auth.jwks import JwksAuthenticator
from app.http.auth.local import LocalClients
from app.http.errors import refuse

METHODS: dict[str, Callable[[Settings], Authenticator]] = {
    "jwks": JwksAuthenticator,
    "hs256": SharedSecretAuthenticator,
    "headers": TrustedHeadersAuthenticator,
}
"""Every authentication method, by the name `AUTH_METHODS` uses."""


ANONYMOUS = "anonymous"


class Identity:
    """Turns a request's headers into its caller (or `None`: no credentials were sent).

    `anonymous` (development's demo, `Settings.demo_identity`): a local client that sends no
    credentials is the user `anonymous`.
    """

    def __init__(
        self,
        methods: Sequence[Authenticator],
        public_base_url: str | None,
        *,
        local: LocalClients | None = None,
        anonymous: bool = False,
        default_tier: str = "free",
    ) -> None:
        self.methods = list(methods)
        self.public_base_url = public_base_url
        self.local = local or LocalClients()
        self.anonymous = anonymous
        self.default_tier = default_tier

    @classmethod
    def from_settings(cls, settings: Settings) -> Identity:
        unknown = [name for name in settings.auth_method_names if name not in METHODS]
        if unknown:
            raise ConfigurationError(
                f"AUTH_METHODS: unknown method {unknown[0]!r} (known: {', '.join(METHODS)})"
            )
        methods = [METHODS[name](settings) for name in settings.auth_method_names]
        local = LocalClients.from_settings(settings)
        return cls(
            methods,
            settings.public_base_url,
            local=local,
            anonymous=settings.demo_identity,
            default_tier=settings.auth_default_tier,
        )

    async def resolve(self, headers: Headers, scope: Scope) -> RequestContext | None:
        elsewhere = self.local.refusal(scope)
        request = AuthRequest(headers, self.base_url(headers, scope), elsewhere=elsewhere)
        for method in self.methods:
            if method.recognizes(request):
                return await method.authenticate(request)
        if request.authorization is not None:
            raise self._unrecognized(request)
        if self.anonymous and elsewhere is None:
            return request.context(ANONYMOUS, "development", tier=self.default_tier)
        return None

    def missing(self, scope: Scope) -> Unauthenticated:
        """The 401 for a request without credentials, saying why where it helps."""
        if self.anonymous and (why := self.local.refusal(scope)) is not None:
            return Unauthenticated(why)
        return Unauthenticated("Authentication required: send `Authorization: Bearer <token>`")

    def base_url(self, headers: Headers, scope: Scope) -> str:
        """`PUBLIC_BASE_URL`, else the URL the client used (uvicorn applies forwarded headers)."""
        if self.public_base_url:
            return self.public_base_url
        return f"{scope.get('scheme', 'http')}://{headers.get('host', 'localhost')}"

    def _unrecognized(self, request: AuthRequest) -> InvalidToken:
        """Why no method took the request's `Authorization` header."""
        scheme, _, token = (request.authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return InvalidToken("Use `Authorization: Bearer <token>`", code="unauthorized")
        if not token.strip():
            return InvalidToken("The Bearer token is empty", code="unauthorized")
        if not any(method.bearer for method in self.methods):
            return InvalidToken(
                "This server does not accept Bearer tokens (no AUTH_JWKS_URL or AUTH_JWT_SECRET)",
                code="unauthorized",
            )
        if request.token_header is None:
            return InvalidToken("The token is not a well-formed JWT")
        alg = str(request.token_header.get("alg"))[:20]
        return InvalidToken(f"Tokens signed with {alg!r} are not accepted")


@dataclass(frozen=True, slots=True)
class IdentityMiddleware:
    """Puts the caller's `RequestContext` in `scope["state"]["context"]`.

    `/chatkit` and direct uploads answer 401 themselves when there is no identity; other
    `/chatkit/...` URLs (signed attachment links) resolve one when credentials are sent and
    otherwise let their route decide. Nothing else is touched.
    """

    app: ASGIApp
    identity: Identity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_under_chatkit(scope):
            try:
                context = await self.identity.resolve(Headers(scope=scope), scope)
                if context is None and is_guarded(scope):
                    raise self.identity.missing(scope)
            except Unauthenticated as exc:
                await refuse(exc, scope, receive, send)
                return
            if context is not None:
                scope.setdefault("state", {})["context"] = context
        await self.app(scope, receive, send)
