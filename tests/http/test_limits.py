"""Domain keys, the body limit and the rate limits, each at and just past its boundary."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
from sqlalchemy import select
from starlette.types import Message, Receive, Scope, Send

from app.context import RequestContext
from app.http.ratelimit import RateLimiter, RateLimitMiddleware
from app.services import Services
from app.store.models import UsageCounterRow
from tests.conftest import make_settings
from tests.helpers.apps import RunningApp, running_app
from tests.helpers.chatkit import create_thread_req, post

LIST_THREADS = {"type": "threads.list", "params": {}}
BODY_LIMIT = 2048


def new_user() -> str:
    return f"u-{uuid4().hex[:10]}"


# Domain keys


@pytest.fixture
async def keyed_client(postgres_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings(postgres_url, chatkit_domain_keys="key-one,key-two")) as r:
        yield r.client


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        ({}, "", 403),
        ({"X-ChatKit-Domain-Key": ""}, "", 403),
        ({"X-ChatKit-Domain-Key": "key-on"}, "", 403),
        ({"X-ChatKit-Domain-Key": "key-one!"}, "", 403),
        ({"X-ChatKit-Domain-Key": "key-one"}, "", 200),
        ({"X-ChatKit-Domain-Key": "key-two"}, "", 200),
        ({}, "?domain_key=key-two", 200),
        ({}, "?domain_key=key-three", 403),
    ],
)
async def test_domain_keys(
    keyed_client: httpx.AsyncClient, headers: dict[str, str], query: str, status: int
) -> None:
    response = await keyed_client.post(
        f"/chatkit{query}", json=LIST_THREADS, headers={"X-User-Id": new_user(), **headers}
    )
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["error"] == "domain_key_required"


async def test_domain_key_is_checked_before_identity(keyed_client: httpx.AsyncClient) -> None:
    response = await keyed_client.post("/chatkit", json=LIST_THREADS)
    assert response.status_code == 403
    assert (await keyed_client.get("/healthz")).status_code == 200


# Body limit


@pytest.fixture
async def small_body_client(postgres_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings(postgres_url, chatkit_max_body_bytes=BODY_LIMIT)) as r:
        yield r.client


def body_of(size: int) -> bytes:
    """A valid threads.list request padded with whitespace to exactly `size` bytes."""
    core = json.dumps(LIST_THREADS).encode()
    return core + b" " * (size - len(core))


async def chunks(body: bytes, size: int = 500) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize(("size", "status"), [(BODY_LIMIT, 200), (BODY_LIMIT + 1, 413)])
@pytest.mark.parametrize("streamed", [False, True])
async def test_body_limit(
    small_body_client: httpx.AsyncClient, size: int, status: int, streamed: bool
) -> None:
    body = body_of(size)
    content: Any = chunks(body) if streamed else body
    response = await small_body_client.post(
        "/chatkit", content=content, headers={"X-User-Id": new_user()}
    )
    assert response.status_code == status, response.text
    if status == 413:
        assert response.json()["error"] == "body_too_large"
        assert str(BODY_LIMIT) in response.json()["message"]


async def test_declared_length_is_refused_up_front(postgres_url: str) -> None:
    """A Content-Length past the limit is refused without reading a byte of the body."""
    settings = make_settings(postgres_url, chatkit_max_body_bytes=BODY_LIMIT)
    async with running_app(settings) as running:
        reads = 0

        async def receive() -> Message:
            nonlocal reads
            reads += 1
            return {"type": "http.request", "body": b"{}", "more_body": False}

        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        scope = http_scope(headers=[(b"content-length", str(10**9).encode())])
        await running.app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert reads == 0


# Header sizes


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"X-User-Name": "n" * 8000}, 200),
        ({"X-User-Name": "n" * 9000}, 431),  # one header over 8 KiB
        ({f"X-Extra-{n}": "e" * 7000 for n in range(5)}, 431),  # 35 kB in all
        ({"Authorization": "Bearer " + "t" * 1_300_000}, 431),  # the 1.3 MB token of the issue
    ],
    ids=["under", "one_header_too_large", "too_large_in_all", "huge_token"],
)
async def test_request_headers_are_bounded(
    postgres_url: str, headers: dict[str, str], status: int
) -> None:
    async with running_app(make_settings(postgres_url)) as running:
        client = running.client
        response = await client.post(
            "/chatkit", json=LIST_THREADS, headers={"X-User-Id": new_user(), **headers}
        )
    assert response.status_code == status, response.text
    if status == 431:
        assert response.json()["error"] == "headers_too_large"


# Rate limits


@pytest.fixture
async def limited(postgres_url: str) -> AsyncIterator[RunningApp]:
    settings = make_settings(
        postgres_url,
        rate_limit_requests_per_minute=3,
        rate_limit_daily_messages="free=2,pro=unlimited",
    )
    async with running_app(settings) as running:
        yield running


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_requests_per_minute(limited: RunningApp) -> None:
    client = limited.client
    clock = limited.services.rate_limiter.clock = Clock(datetime(2030, 1, 1, 12, 0, 15))
    user = new_user()
    for _ in range(3):
        assert (await post(client, user, LIST_THREADS)).status_code == 200
    refused = await post(client, user, LIST_THREADS)
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert refused.json()["message"] == (
        "Too many requests: the limit is 3 per minute. Try again in 45 seconds."
    )
    assert refused.headers["retry-after"] == "45"
    # Someone else is not affected, and the next minute starts afresh.
    assert (await post(client, new_user(), LIST_THREADS)).status_code == 200
    clock.now += timedelta(seconds=45)
    assert (await post(client, user, LIST_THREADS)).status_code == 200


async def test_daily_messages_by_tier(limited: RunningApp) -> None:
    client = limited.client
    clock = Clock(datetime(2030, 1, 1, 19, 0, 0))
    limited.services.rate_limiter.clock = clock
    user = new_user()
    for _ in range(2):
        assert (await post(client, user, create_thread_req())).status_code == 200
        clock.now += timedelta(minutes=1)  # stay under the per-minute limit
    refused = await post(client, user, create_thread_req())
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "quota_exceeded"
    assert body["message"] == (
        "You have used all 2 messages for today on the free plan. "
        "The quota resets at 00:00 UTC, in 4 hours 58 minutes."
    )
    assert refused.headers["retry-after"] == str(4 * 3600 + 58 * 60)
    # Reading is not a message; a pro user has no daily cap; tomorrow the quota is back.
    assert (await post(client, user, LIST_THREADS)).status_code == 200
    pro = new_user()
    for _ in range(3):
        clock.now += timedelta(minutes=1)
        response = await post(client, pro, create_thread_req(), **{"X-User-Tier": "pro"})
        assert response.status_code == 200
    clock.now += timedelta(hours=5)
    assert (await post(client, user, create_thread_req())).status_code == 200


async def test_a_tier_the_quotas_do_not_name_gets_the_default_tiers_quota(
    limited: RunningApp,
) -> None:
    """A user who could write their own tier claim must not escape the quota with it."""
    client = limited.client
    clock = Clock(datetime(2030, 1, 1, 19, 0, 0))
    limited.services.rate_limiter.clock = clock
    user = new_user()
    for _ in range(2):
        response = await post(client, user, create_thread_req(), **{"X-User-Tier": "platinum"})
        assert response.status_code == 200
        clock.now += timedelta(minutes=1)
    refused = await post(client, user, create_thread_req(), **{"X-User-Tier": "platinum"})
    assert refused.status_code == 429
    assert "on the free plan" in refused.json()["message"]


# Concurrent streams (in-process), with a stand-in app that holds its stream open


async def messages_counted(services: Services, user_id: str) -> int:
    async with services.engine.connect() as conn:
        count = await conn.scalar(
            select(UsageCounterRow.count).where(
                UsageCounterRow.user_id == user_id, UsageCounterRow.bucket == "messages"
            )
        )
    return int(count or 0)


def http_scope(headers: list[tuple[bytes, bytes]] | None = None, **extra: Any) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/chatkit",
        "raw_path": b"/chatkit",
        "query_string": b"",
        "headers": headers or [],
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
        "http_version": "1.1",
        "root_path": "",
        **extra,
    }


async def test_concurrent_streams_per_user_are_bounded(postgres_url: str) -> None:
    async with running_app(make_settings(postgres_url)) as running:
        services = running.services
        settings = make_settings(postgres_url, max_concurrent_streams_per_user=2)
        release = asyncio.Event()
        opened: asyncio.Queue[str] = asyncio.Queue()

        async def holding_app(scope: Scope, receive: Receive, send: Send) -> None:
            await receive()
            await opened.put(scope["state"]["context"].user_id)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await release.wait()
            await send({"type": "http.response.body", "body": b"data: {}\n\n"})

        middleware = RateLimitMiddleware(holding_app, RateLimiter(settings, services.engine))
        user = RequestContext(user_id=new_user(), auth_method="development")

        async def call(request_type: str, who: RequestContext = user) -> int:
            body = json.dumps({"type": request_type, "params": {}}).encode()

            async def receive() -> Message:
                return {"type": "http.request", "body": body, "more_body": False}

            statuses: list[int] = []

            async def send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            scope = http_scope(state={"context": who})
            await middleware(scope, receive, send)
            return statuses[0]

        first = asyncio.create_task(call("threads.create"))
        second = asyncio.create_task(call("threads.add_user_message"))
        assert [await opened.get(), await opened.get()] == [user.user_id] * 2
        assert middleware.limiter.streams.open[user.user_id] == 2
        release_later = asyncio.create_task(call("threads.create"))
        third = await asyncio.wait_for(release_later, 5)  # refused at once, not queued
        assert third == 429
        assert await messages_counted(services, user.user_id) == 2  # the refused one used none
        other = RequestContext(user_id=new_user(), auth_method="development")
        assert not release.is_set()
        other_task = asyncio.create_task(call("threads.create", other))
        assert await opened.get() == other.user_id
        assert middleware.limiter.streams.open[other.user_id] == 1
        release.set()
        assert list(await asyncio.gather(first, second, other_task)) == [200, 200, 200]
        assert middleware.limiter.streams.open == {}
        assert await call("threads.create") == 200


async def test_the_edge_lets_the_lifespan_through(postgres_url: str) -> None:
    """Every middleware must pass non-HTTP scopes on untouched (uvicorn runs the lifespan)."""
    from app.main import create_app

    app = create_app(make_settings(postgres_url, chatkit_domain_keys="k"))
    sent: list[Message] = []
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_the_body_limit_runs_before_identity(small_body_client: httpx.AsyncClient) -> None:
    response = await small_body_client.post("/chatkit", content=body_of(BODY_LIMIT + 1))
    assert response.status_code == 413
    unauthenticated = await small_body_client.post("/chatkit", content=body_of(BODY_LIMIT))
    assert unauthenticated.status_code == 401
