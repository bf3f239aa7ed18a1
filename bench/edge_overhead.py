"""What the edge costs: token verification per algorithm, and the rate limiter per request.

Run: `.venv/bin/python -m bench.edge_overhead [DATABASE_URL]` (a migrated database; SQLite if
omitted, created in a temporary directory).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from uuid import uuid4

from starlette.datastructures import Headers

from app.http.auth.base import AuthRequest
from app.http.auth.jwks import JwksAuthenticator
from tests.conftest import make_settings
from tests.helpers.apps import running_app
from tests.helpers.chatkit import create_thread_req, post
from tests.helpers.database import migrate
from tests.helpers.jwks import JwksServer, better_auth_claims, generate_key

ALGORITHMS = ["EdDSA", "ES256", "ES512", "PS256", "RS256"]
LIST_THREADS = {"type": "threads.list", "params": {}}


async def verification(rounds: int = 2000) -> None:
    server = await JwksServer().start()
    keys = {alg: generate_key(alg) for alg in ALGORITHMS}
    server.keys = [key.jwk for key in keys.values()]
    method = JwksAuthenticator(
        make_settings("sqlite+aiosqlite:///unused.db", auth_jwks_url=server.url)
    )
    try:
        for alg, key in keys.items():
            headers = Headers({"authorization": f"Bearer {key.sign(better_auth_claims())}"})
            await method.authenticate(AuthRequest(headers, "http://bench"))  # fetch the keys once
            start = time.perf_counter()
            for _ in range(rounds):
                await method.authenticate(AuthRequest(headers, "http://bench"))
            micros = (time.perf_counter() - start) / rounds * 1e6
            out(f"verify {alg:6} {micros:8.1f} us/token")
    finally:
        await server.stop()


async def per_request(url: str, rounds: int = 200) -> None:
    for label, overrides in [
        ("limits on ", {}),
        (
            "limits off",
            {
                "rate_limit_requests_per_minute": 0,
                "rate_limit_daily_messages": "*=unlimited",
                "max_concurrent_streams_per_user": 0,
            },
        ),
    ]:
        async with running_app(make_settings(url, **overrides)) as running:
            client = running.client
            for request, name in [
                (LIST_THREADS, "threads.list"),
                (create_thread_req(), "threads.create"),
            ]:
                await post(client, "warm-up", request)
                start = time.perf_counter()
                for _ in range(rounds):
                    await post(client, f"u-{uuid4().hex[:8]}", request)
                millis = (time.perf_counter() - start) / rounds * 1e3
                out(f"{url.split(':')[0]:18} {label} {name:15} {millis:6.2f} ms/request")


def out(line: str) -> None:
    sys.stdout.write(line + "\n")


async def main(url: str) -> None:
    await verification()
    await per_request(url)


if __name__ == "__main__":
    database = (
        sys.argv[1] if len(sys.argv) > 1 else f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/b.db"
    )
    migrate(database)
    asyncio.run(main(database))
