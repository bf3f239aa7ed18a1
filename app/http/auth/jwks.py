"""`jwks`: Better Auth's JWTs (EdDSA, ES*, PS*, RS*), verified with the keys its JWKS publishes.

The key set (Better Auth publishes one at `/api/auth/jwks`) is cached by `JwksCache`.

Keys are cached for `AUTH_JWKS_CACHE_SECONDS` and kept when the endpoint is down. An unknown `kid`
triggers a refetch at once (after a rotation the first new token must verify), but each unknown
`kid` at most once per `AUTH_JWKS_UNKNOWN_KID_SECONDS`, and all refetches are spaced by at least
`AUTH_JWKS_MIN_REFETCH_SECONDS` (a caller waits for the next slot rather than being refused), so
tokens with made-up `kid`s cannot turn this server into a load generator against the auth server.
A fetch has `AUTH_JWKS_TIMEOUT_SECONDS` in all and at most `MAX_JWKS_BYTES`, so a slow or hostile
endpoint cannot hold requests for longer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from app.config import ConfigurationError, Settings
from app.http.auth.base import AuthRequest, InvalidToken
from app.http.auth.tokens import JwtAuthenticator

logger = logging.getLogger(__name__)

ASYMMETRIC_ALGORITHMS = frozenset(
    {"EdDSA", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"}
)
RETRY_AFTER_FAILURE_SECONDS = 30.0
MAX_JWKS_BYTES = 64 * 1024
"""A key set is a few kilobytes (about 1 KB per RSA key); anything far larger is refused."""


class JwksUnavailable(Exception):
    """The key set could not be fetched or parsed."""


def parse_jwks(document: Any) -> dict[str, PyJWK]:
    """Usable public keys by `kid`. The algorithm is the JWK's own `alg` (or implied by its type);
    symmetric and unsupported keys are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksUnavailable("the key set is not a JSON object with a `keys` list")
    keys: dict[str, PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        try:
            key = PyJWK(entry)
        except PyJWTError:
            continue
        if key.algorithm_name in ASYMMETRIC_ALGORITHMS:
            keys[entry["kid"]] = key
    return keys


class JwksCache:
    """Signing keys from one JWKS URL, fetched with httpx and shared by all requests."""

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 600,
        unknown_kid_seconds: float = 60,
        min_refetch_seconds: float = 1.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self.unknown_kid_seconds = unknown_kid_seconds
        self.min_refetch_seconds = min_refetch_seconds
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self.sleep = sleep
        self.keys: dict[str, PyJWK] = {}
        self.fetches = 0
        """How many times the endpoint was asked (successfully or not)."""
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._unknown_kids: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def get(self, kid: str) -> PyJWK | None:
        """The key with this `kid`, refetching the set when it is stale or the `kid` is new."""
        if kid in self.keys and not self._stale():
            return self.keys[kid]
        arrived = self.clock()
        async with self._lock:
            # A fetch that started after this request arrived already answers it (single flight).
            fetched_since = self._attempted_at is not None and self._attempted_at > arrived
            if fetched_since or (kid in self.keys and not self._stale()):
                return self.keys.get(kid)
            if kid not in self.keys and self._recently_missing(kid):
                return None
            # Only a successful fetch proves a kid unknown; after a failure the next try comes
            # as soon as the refetch spacing allows.
            if await self._refresh() and kid not in self.keys:
                self._remember_missing(kid)
            return self.keys.get(kid)

    def _stale(self) -> bool:
        return self._fetched_at is None or self.clock() - self._fetched_at >= self.cache_seconds

    def _recently_missing(self, kid: str) -> bool:
        seen = self._unknown_kids.get(kid)
        return seen is not None and self.clock() - seen < self.unknown_kid_seconds

    def _remember_missing(self, kid: str) -> None:
        now = self.clock()
        if len(self._unknown_kids) > 1000:  # bounded memory under a flood of made-up kids
            self._unknown_kids = {
                k: t for k, t in self._unknown_kids.items() if now - t < self.unknown_kid_seconds
            }
        self._unknown_kids[kid] = now

    async def _refresh(self) -> bool:
        """Fetch the set; on failure keep the cached keys (and log), so an outage is survivable."""
        if self._attempted_at is not None:
            wait = self.min_refetch_seconds - (self.clock() - self._attempted_at)
            if wait > 0:
                await self.sleep(wait)
        self._attempted_at = self.clock()
        self.fetches += 1
        try:
            keys = parse_jwks(await self._download())
        except (
            httpx.HTTPError,
            httpx.InvalidURL,
            ValueError,
            JwksUnavailable,
            TimeoutError,
        ) as exc:
            logger.warning(
                "JWKS fetch from %s failed (%s); keeping %d cached keys",
                self.url,
                type(exc).__name__,
                len(self.keys),
            )
            if self.keys:  # serve the cached keys for a while before asking again
                retry_in = min(self.cache_seconds, RETRY_AFTER_FAILURE_SECONDS)
                self._fetched_at = self.clock() - self.cache_seconds + retry_in
            return False
        self.keys = keys
        self._fetched_at = self.clock()
        self._unknown_kids = {k: t for k, t in self._unknown_kids.items() if k not in keys}
        return True

    async def _download(self) -> Any:
        """The parsed key set, within `timeout_seconds` in all and `MAX_JWKS_BYTES`.

        httpx's timeout applies to each read, so an endpoint trickling a byte at a time could
        hold every request waiting for keys; the deadline covers the whole fetch.
        """
        body = bytearray()
        async with (
            asyncio.timeout(self.timeout_seconds),
            httpx.AsyncClient(timeout=self.timeout_seconds) as client,
            client.stream("GET", self.url, headers={"Accept": "application/json"}) as response,
        ):
            response.raise_for_status()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksUnavailable(f"the key set is larger than {MAX_JWKS_BYTES} bytes")
        return json.loads(body)


class JwksAuthenticator(JwtAuthenticator):
    """Tokens whose header names a key (`kid`) of the key set and that key's own algorithm."""

    algorithms = ASYMMETRIC_ALGORITHMS

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        if settings.auth_jwks_url is None:
            raise ConfigurationError("AUTH_METHODS names jwks, which needs AUTH_JWKS_URL")
        self.jwks = JwksCache(
            settings.auth_jwks_url,
            cache_seconds=settings.auth_jwks_cache_seconds,
            unknown_kid_seconds=settings.auth_jwks_unknown_kid_seconds,
            min_refetch_seconds=settings.auth_jwks_min_refetch_seconds,
            timeout_seconds=settings.auth_jwks_timeout_seconds,
        )

    async def key(self, request: AuthRequest) -> tuple[Any, str]:
        header = request.token_header or {}
        kid, alg = header.get("kid"), request.token_algorithm
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("The token header has no key id (kid)")
        key = await self.jwks.get(kid)
        if key is None:
            raise InvalidToken("The token was signed with an unknown key")
        if key.algorithm_name != alg:
            raise InvalidToken(f"The token's key signs with {key.algorithm_name}, not {alg}")
        return key.key, key.algorithm_name
