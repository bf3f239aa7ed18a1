"""Better Auth JWTs through the API: accepted algorithms, every rejection, rotation, outages."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from starlette.datastructures import Headers

from app.context import RequestContext
from app.http.auth.identity import Identity
from app.http.auth.jwks import JwksAuthenticator, JwksCache
from app.services import Services
from app.store.models import ThreadRow, UsageCounterRow
from tests.conftest import make_settings
from tests.helpers.apps import RunningApp, running_app
from tests.helpers.chatkit import create_thread_req, created_thread_id, sse_events
from tests.helpers.database import owned_rows
from tests.helpers.jwks import (
    AUDIENCE,
    ISSUER,
    JwksServer,
    SigningKey,
    b64url,
    bearer,
    better_auth_claims,
    generate_key,
    hmac_token,
    unsigned_token,
)

ALGORITHMS = ["EdDSA", "ES256", "ES512", "PS256", "RS256"]
SECRET = "a-shared-secret-of-at-least-32-bytes!"


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {alg: generate_key(alg) for alg in ALGORITHMS}


@pytest.fixture
async def jwks_server(keys: dict[str, SigningKey]) -> AsyncIterator[JwksServer]:
    server = await JwksServer().start()
    server.keys = [key.jwk for key in keys.values()]
    yield server
    await server.stop()


@pytest.fixture
async def empty_jwks() -> AsyncIterator[JwksServer]:
    """A key set with no keys yet: a test puts in the ones it needs."""
    server = await JwksServer().start()
    yield server
    await server.stop()


@pytest.fixture
async def jwt_app(postgres_url: str, jwks_server: JwksServer) -> AsyncIterator[RunningApp]:
    settings = make_settings(
        postgres_url,
        auth_jwks_url=jwks_server.url,
        auth_jwt_issuer=ISSUER,
        auth_jwt_audience=AUDIENCE,
        auth_jwks_min_refetch_seconds=0,
    )
    async with running_app(settings) as pair:
        yield pair


@pytest.fixture
def client(jwt_app: RunningApp) -> httpx.AsyncClient:
    return jwt_app.client


async def create_thread(client: httpx.AsyncClient, token: str, **headers: str) -> httpx.Response:
    return await client.post(
        "/chatkit", json=create_thread_req(), headers={**bearer(token), **headers}
    )


def jwks_of(services: Services) -> JwksCache:
    [method] = [m for m in services.identity.methods if isinstance(m, JwksAuthenticator)]
    return method.jwks


async def rows_touched(services: Services, user_id: str) -> int:
    """Threads and usage counters stored for `user_id`: a refused request must leave none."""
    return await owned_rows(services.engine, ThreadRow, UsageCounterRow, user_id=user_id)


@pytest.mark.parametrize("alg", ALGORITHMS)
async def test_valid_tokens_are_accepted_and_own_their_threads(
    jwt_app: RunningApp, keys: dict[str, SigningKey], alg: str
) -> None:
    services, client = jwt_app.services, jwt_app.client
    claims = better_auth_claims()
    response = await create_thread(client, keys[alg].sign(claims))
    assert response.status_code == 200, response.text
    thread_id = created_thread_id(sse_events(response))
    owner = RequestContext(user_id=claims["sub"], auth_method="jwt")
    assert (await services.store.load_thread(thread_id, owner)).id == thread_id


async def test_audience_may_be_a_list(
    client: httpx.AsyncClient, keys: dict[str, SigningKey]
) -> None:
    token = keys["EdDSA"].sign(better_auth_claims(aud=["https://other.example", AUDIENCE]))
    assert (await create_thread(client, token)).status_code == 200


@pytest.mark.parametrize(
    ("tier_claim", "tier", "expected_tier"),
    [("tier", "pro", "pro"), ("plan", "pro", "free"), ("tier", "enterprise", "free")],
    ids=["named_tier", "no_tier_claim", "tier_the_quotas_do_not_name"],
)
async def test_claims_map_to_the_request_context(
    keys: dict[str, SigningKey], tier_claim: str, tier: str, expected_tier: str
) -> None:
    server = await JwksServer().start()
    server.keys = [keys["ES256"].jwk]
    settings = make_settings(
        "sqlite+aiosqlite:///unused.db",
        auth_jwks_url=server.url,
        auth_tier_claim=tier_claim,
        public_base_url="https://chat.example.com",
    )
    identity = Identity.from_settings(settings)
    token = keys["ES256"].sign(better_auth_claims("u-42", tier=tier))
    headers = Headers({"authorization": f"Bearer {token}", "accept-language": "fr-FR"})
    try:
        context = await identity.resolve(headers, {"type": "http", "scheme": "http"})
    finally:
        await server.stop()
    assert context is not None
    assert (context.user_id, context.auth_method) == ("u-42", "jwt")
    assert (context.email, context.name) == ("ada@example.com", "Ada Lovelace")
    assert context.tier == expected_tier
    assert context.locale == "fr-FR"
    assert context.base_url == "https://chat.example.com"
    assert context.claims["emailVerified"] is True


def rejected_tokens(keys: dict[str, SigningKey]) -> dict[str, tuple[str, str]]:
    """(token, the user it claims to be) for every rejection the issue lists."""
    key = keys["EdDSA"]
    now = int(time.time())
    cases: dict[str, dict[str, Any]] = {
        "expired": better_auth_claims(iat=now - 7200, exp=now - 3600),
        "not_yet_valid_nbf": better_auth_claims(nbf=now + 3600),
        "issued_in_the_future": better_auth_claims(iat=now + 3600, exp=now + 7200),
        "wrong_issuer": better_auth_claims(iss="https://evil.example.com"),
        "wrong_audience": better_auth_claims(aud="https://evil.example.com"),
        "missing_exp": better_auth_claims(exp=None),
        "missing_iat": better_auth_claims(iat=None),
    }
    tokens = {name: (key.sign(claims), claims["sub"]) for name, claims in cases.items()}

    no_sub = better_auth_claims(sub=None)
    tokens["missing_sub"] = (key.sign(no_sub), no_sub["id"])
    empty_sub = better_auth_claims(sub="")
    tokens["empty_sub"] = (key.sign(empty_sub), empty_sub["id"])

    for name, subject in {
        "sub_with_nul": "a\x00b",
        "sub_with_lone_surrogate": "a\ud800b",
        "sub_with_control_character": "a\x1bb",
        "sub_blank": "   ",
        "sub_too_long": "u" * 256,
        "sub_not_a_string": 42,
    }.items():
        tokens[name] = (key.sign(better_auth_claims(sub=subject)), "nobody")
    time_claims: dict[str, dict[str, Any]] = {
        "exp_as_a_string": {"exp": str(now + 900)},
        "iat_as_a_string": {"iat": str(now)},
        "nbf_as_a_string": {"nbf": str(now - 10)},
        "exp_as_a_boolean": {"exp": True},
        "exp_infinite": {"exp": float("inf")},
    }
    for name, overrides in time_claims.items():
        claims = better_auth_claims(**overrides)
        tokens[name] = (key.sign(claims), claims["sub"])

    claims = better_auth_claims()
    tokens["alg_none"] = (unsigned_token({"alg": "none", "kid": key.kid}, claims), claims["sub"])
    claims = better_auth_claims()
    rsa = keys["RS256"]
    tokens["hs256_with_public_key"] = (hmac_token(rsa.public_pem(), claims, rsa.kid), claims["sub"])

    victim = better_auth_claims()
    header, _, signature = key.sign(better_auth_claims()).split(".")
    forged_payload = b64url(json.dumps(victim).encode())
    tokens["tampered_payload"] = (f"{header}.{forged_payload}.{signature}", victim["sub"])

    claims = better_auth_claims()
    header, payload, signature = key.sign(claims).split(".")
    flipped = ("A" if signature[5] != "A" else "B") + signature[6:]
    tokens["tampered_signature"] = (f"{header}.{payload}.{signature[:5]}{flipped}", claims["sub"])

    claims = better_auth_claims()
    impostor = SigningKey(key.kid, "EdDSA", generate_key("EdDSA").private_key)
    tokens["right_kid_wrong_key"] = (impostor.sign(claims), claims["sub"])

    claims = better_auth_claims()
    tokens["unknown_kid"] = (
        generate_key("ES256", kid="never-published").sign(claims),
        claims["sub"],
    )

    claims = better_auth_claims()
    rs_as_ps = SigningKey(keys["PS256"].kid, "RS256", keys["PS256"].private_key)
    tokens["alg_differs_from_the_jwk"] = (rs_as_ps.sign(claims), claims["sub"])

    claims = better_auth_claims()
    tokens["no_kid"] = (
        jwt.encode(claims, key.private_key, algorithm="EdDSA"),
        claims["sub"],
    )
    tokens["garbage"] = ("garbage", "nobody")
    tokens["three_garbage_parts"] = ("not.a.jwt", "nobody")
    return tokens


REJECTIONS = [
    "expired",
    "not_yet_valid_nbf",
    "issued_in_the_future",
    "wrong_issuer",
    "wrong_audience",
    "missing_exp",
    "missing_iat",
    "missing_sub",
    "empty_sub",
    "sub_with_nul",
    "sub_with_lone_surrogate",
    "sub_with_control_character",
    "sub_blank",
    "sub_too_long",
    "sub_not_a_string",
    "exp_as_a_string",
    "iat_as_a_string",
    "nbf_as_a_string",
    "exp_as_a_boolean",
    "exp_infinite",
    "alg_none",
    "hs256_with_public_key",
    "tampered_payload",
    "tampered_signature",
    "right_kid_wrong_key",
    "unknown_kid",
    "alg_differs_from_the_jwk",
    "no_kid",
    "garbage",
    "three_garbage_parts",
]


@pytest.mark.parametrize("case", REJECTIONS)
async def test_bad_tokens_get_401_and_touch_nothing(
    jwt_app: RunningApp, keys: dict[str, SigningKey], case: str
) -> None:
    services, client = jwt_app.services, jwt_app.client
    token, claimed_user = rejected_tokens(keys)[case]
    response = await create_thread(client, token)
    assert response.status_code == 401, (case, response.text)
    body = response.json()
    assert body["error"] == "invalid_token" and body["message"]
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert await rows_touched(services, claimed_user) == 0


@pytest.mark.parametrize("authorization", ["Bearer", "Bearer ", "Bearer    ", "Basic dXNlcjpwdw=="])
async def test_empty_or_non_bearer_authorization_is_401(
    client: httpx.AsyncClient, authorization: str
) -> None:
    response = await client.post(
        "/chatkit", json=create_thread_req(), headers={"Authorization": authorization}
    )
    assert response.status_code == 401
    assert "invalid_token" in response.headers["www-authenticate"]


async def test_hs256_public_key_confusion_is_refused_even_with_a_secret(
    postgres_url: str, jwks_server: JwksServer, keys: dict[str, SigningKey]
) -> None:
    settings = make_settings(postgres_url, auth_jwks_url=jwks_server.url, auth_jwt_secret=SECRET)
    async with running_app(settings) as running:
        client = running.client
        rsa = keys["RS256"]
        forged = hmac_token(rsa.public_pem(), better_auth_claims(), rsa.kid)
        assert (await create_thread(client, forged)).status_code == 401
        genuine = hmac_token(SECRET.encode(), better_auth_claims())
        assert (await create_thread(client, genuine)).status_code == 200


async def test_hs256_with_the_better_auth_secret_alias(postgres_url: str) -> None:
    settings = make_settings(postgres_url, better_auth_secret=SECRET, auth_jwt_issuer=ISSUER)
    assert settings.auth_jwt_secret is not None
    async with running_app(settings) as running:
        client = running.client
        assert (
            await create_thread(client, hmac_token(SECRET.encode(), better_auth_claims()))
        ).status_code == 200
        wrong_secret = hmac_token(b"another-secret", better_auth_claims())
        assert (await create_thread(client, wrong_secret)).status_code == 401
        wrong_issuer = hmac_token(SECRET.encode(), better_auth_claims(iss="https://x.example"))
        assert (await create_thread(client, wrong_issuer)).status_code == 401


async def test_without_any_token_configuration_bearer_is_401(postgres_url: str, keys) -> None:
    async with running_app(make_settings(postgres_url)) as running:
        client = running.client
        response = await create_thread(client, keys["EdDSA"].sign(better_auth_claims()))
    assert response.status_code == 401
    assert "AUTH_JWKS_URL" in response.json()["message"]


async def test_small_clock_skew_is_tolerated(
    client: httpx.AsyncClient, keys: dict[str, SigningKey]
) -> None:
    now = int(time.time())
    skewed = better_auth_claims(iat=now + 10, exp=now - 10)  # within the 30 s leeway
    assert (await create_thread(client, keys["ES256"].sign(skewed))).status_code == 200


async def test_key_rotation_accepts_the_new_key_at_once(
    jwt_app: RunningApp, jwks_server: JwksServer, keys: dict[str, SigningKey]
) -> None:
    client = jwt_app.client
    assert (
        await create_thread(client, keys["EdDSA"].sign(better_auth_claims()))
    ).status_code == 200
    fetches = jwks_server.requests
    rotated = generate_key("EdDSA")
    jwks_server.keys = [rotated.jwk, keys["EdDSA"].jwk]
    response = await create_thread(client, rotated.sign(better_auth_claims()))
    assert response.status_code == 200, response.text
    assert jwks_server.requests == fetches + 1


async def test_a_retired_key_stops_verifying_after_the_cache_expires(
    jwt_app: RunningApp, jwks_server: JwksServer, keys: dict[str, SigningKey]
) -> None:
    services, client = jwt_app.services, jwt_app.client
    old = keys["ES256"]
    assert (await create_thread(client, old.sign(better_auth_claims()))).status_code == 200
    jwks_server.keys = [keys["EdDSA"].jwk]
    jwks = jwks_of(services)
    jwks.clock = lambda: time.monotonic() + jwks.cache_seconds + 1
    assert (await create_thread(client, old.sign(better_auth_claims()))).status_code == 401


async def test_cached_keys_verify_while_the_jwks_endpoint_is_down(
    jwt_app: RunningApp, jwks_server: JwksServer, keys: dict[str, SigningKey]
) -> None:
    services, client = jwt_app.services, jwt_app.client
    assert (
        await create_thread(client, keys["RS256"].sign(better_auth_claims()))
    ).status_code == 200
    await jwks_server.stop()
    jwks = jwks_of(services)
    jwks.clock = lambda: time.monotonic() + jwks.cache_seconds + 1  # cache is stale: refetch fails
    fetches = jwks.fetches
    response = await create_thread(client, keys["RS256"].sign(better_auth_claims()))
    assert response.status_code == 200, response.text
    assert jwks.fetches == fetches + 1  # it did try, and kept the cached keys
    unknown = generate_key("ES256").sign(better_auth_claims())
    assert (await create_thread(client, unknown)).status_code == 401


async def test_an_unreachable_jwks_with_nothing_cached_is_401_not_500(
    postgres_url: str, keys: dict[str, SigningKey]
) -> None:
    server = await JwksServer().start()
    await server.stop()  # nothing listens on its port now
    settings = make_settings(postgres_url, auth_jwks_url=server.url)
    async with running_app(settings) as running:
        client = running.client
        response = await create_thread(client, keys["EdDSA"].sign(better_auth_claims()))
    assert response.status_code == 401


async def test_a_broken_jwks_document_keeps_the_cached_keys(
    keys: dict[str, SigningKey], empty_jwks: JwksServer
) -> None:
    server = empty_jwks
    now = [0.0]
    cache = JwksCache(server.url, cache_seconds=10, min_refetch_seconds=0, clock=lambda: now[0])
    server.keys = [keys["ES512"].jwk]
    assert await cache.get(keys["ES512"].kid) is not None
    server.up = False  # 503
    now[0] = 11
    assert await cache.get(keys["ES512"].kid) is not None
    assert cache.fetches == 2


async def test_unknown_kid_refetches_are_limited(
    keys: dict[str, SigningKey], empty_jwks: JwksServer
) -> None:
    server = empty_jwks
    server.keys = [keys["EdDSA"].jwk]
    cache = JwksCache(server.url, min_refetch_seconds=0, unknown_kid_seconds=60)
    assert await cache.get(keys["EdDSA"].kid) is not None
    assert server.requests == 1
    # The same unknown kid again and again: one refetch.
    assert await cache.get("made-up") is None
    assert await cache.get("made-up") is None
    assert server.requests == 2
    # A burst of 20 made-up kids: the first starts a fetch, the 19 that arrive while it is
    # in flight share the next one.
    results = await asyncio.gather(*(cache.get(f"burst-{i}") for i in range(20)))
    assert results == [None] * 20
    assert server.requests == 4
    # A kid that appears later is still found at once (rotation).
    rotated = generate_key("ES256")
    server.keys = [keys["EdDSA"].jwk, rotated.jwk]
    assert await cache.get(rotated.kid) is not None
    assert server.requests == 5


async def test_symmetric_keys_in_a_jwks_are_ignored(empty_jwks: JwksServer) -> None:
    server = empty_jwks
    server.keys = [{"kty": "oct", "kid": "sym", "alg": "HS256", "k": b64url(b"secret")}]
    cache = JwksCache(server.url, min_refetch_seconds=0)
    assert await cache.get("sym") is None


async def test_refetches_are_spaced_by_the_minimum_interval(empty_jwks: JwksServer) -> None:
    """A second new kid right after a fetch waits for the next slot, then is looked up."""
    server = empty_jwks
    now = [100.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    cache = JwksCache(server.url, min_refetch_seconds=2, clock=lambda: now[0], sleep=sleep)
    first, second = generate_key("EdDSA"), generate_key("EdDSA")
    server.keys = [first.jwk]
    assert await cache.get(first.kid) is not None
    now[0] += 0.5
    server.keys = [first.jwk, second.jwk]
    assert await cache.get(second.kid) is not None
    assert waits == [1.5]
    assert server.requests == 2


async def test_a_kid_seen_during_an_outage_is_found_once_the_jwks_is_back(
    empty_jwks: JwksServer, keys: dict[str, SigningKey]
) -> None:
    key = keys["EdDSA"]
    empty_jwks.keys, empty_jwks.up = [key.jwk], False
    cache = JwksCache(empty_jwks.url, min_refetch_seconds=0, unknown_kid_seconds=60)
    assert await cache.get(key.kid) is None
    empty_jwks.up = True
    assert await cache.get(key.kid) is not None


async def test_a_trickling_jwks_endpoint_is_cut_off_at_the_total_deadline(
    empty_jwks: JwksServer,
) -> None:
    """2 bytes every 0.1 s never trips a per-read timeout; the whole fetch has a deadline."""
    server = empty_jwks
    key = generate_key("EdDSA")
    server.keys = [key.jwk]
    server.trickle = 0.1  # the whole key set would take about 8 s
    cache = JwksCache(server.url, min_refetch_seconds=0, timeout_seconds=0.5)
    started = time.monotonic()
    assert await cache.get(key.kid) is None
    assert time.monotonic() - started < 3
    server.trickle = None  # the next fetch is not held up by the abandoned one
    assert await cache.get(key.kid) is not None


async def test_an_oversized_jwks_is_refused(empty_jwks: JwksServer) -> None:
    server = empty_jwks
    key = generate_key("EdDSA")
    padding = [{"kty": "oct", "kid": f"pad-{n}", "k": "A" * 100} for n in range(1000)]
    server.keys = [key.jwk, *padding]  # about 130 KB
    cache = JwksCache(server.url, min_refetch_seconds=0)
    assert await cache.get(key.kid) is None
    server.keys = [key.jwk, *padding[:100]]  # about 13 KB
    assert await cache.get(key.kid) is not None


async def test_a_huge_valid_token_is_refused_for_its_size(
    client: httpx.AsyncClient, keys: dict[str, SigningKey]
) -> None:
    token = keys["EdDSA"].sign(better_auth_claims(padding="p" * 1_000_000))
    response = await create_thread(client, token)
    assert response.status_code == 431
    assert response.json()["error"] == "headers_too_large"
