"""The Better Auth example (examples/better-auth) and this backend, both as real processes.

The example is installed from its lock file with `npm ci` (again only when the lock or Node
changes), signs a user up through Better Auth's HTTP API and mints a real EdDSA JWT at
/api/auth/token. The backend verifies that token against the example's /api/auth/jwks, with the
issuer and audience the example's README names, and runs a streamed turn for that user. The
example's `tier` claim cannot be raised by its user (issue 11: update-user lifted the quota).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from app.store.db import PROJECT_ROOT, create_engine
from app.store.models import ThreadRow
from tests import conftest
from tests.helpers.chatkit import create_thread_req, event_types, sse_events
from tests.helpers.server import (
    ServerProcess,
    app_server,
    base_environment,
    free_port,
    start_server,
)

EXAMPLE = PROJECT_ROOT / "examples" / "better-auth"
INSTALL_STAMP = EXAMPLE / "node_modules" / ".installed-from-lock"
NPM_CI_TIMEOUT_SECONDS = 300
PASSWORD = "correct horse battery staple"

pytestmark = pytest.mark.skipif(
    not (shutil.which("node") and shutil.which("npm")),
    reason="the Better Auth example needs Node.js and npm on PATH",
)


def install_example() -> None:
    """`npm ci` from the committed lock, unless node_modules holds that very install already.

    The stamp names the lock's hash and the Node version (npm picks libsql's native binary for
    the platform it installs on). Nothing compiles: the install takes seconds.
    """
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    lock = hashlib.sha256((EXAMPLE / "package-lock.json").read_bytes()).hexdigest()
    wanted = f"package-lock.json sha256 {lock}, node {node.stdout.strip()}\n"
    if INSTALL_STAMP.is_file() and INSTALL_STAMP.read_text() == wanted:
        return
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=NPM_CI_TIMEOUT_SECONDS,
    )
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    INSTALL_STAMP.write_text(wanted)


def example_server(
    tmp_path: Path, *, port: int, chatkit_url: str, secret: str
) -> AbstractContextManager[ServerProcess]:
    """The example as `npm start` runs it, on the SQLite file under `tmp_path`, calling the backend.

    `secret` encrypts the signing keys in that file: a restart must be given the same one.
    """
    env = base_environment(
        HOST="127.0.0.1",
        PORT=str(port),
        BETTER_AUTH_URL=f"http://127.0.0.1:{port}",
        BETTER_AUTH_SECRET=secret,
        CHATKIT_URL=chatkit_url,
        DATABASE_PATH=str(tmp_path / "auth" / "auth.db"),
    )
    return start_server(
        ["node", "server.mjs"],
        port=port,
        env=env,
        cwd=EXAMPLE,
        log_path=tmp_path / "better-auth.log",
        ready_path="/api/auth/ok",
    )


def backend_server(
    tmp_path: Path, *, port: int, database_url: str, auth_url: str
) -> AbstractContextManager[ServerProcess]:
    """This backend with only JWTs as identity, trusting the example as the README says.

    Started from an empty directory (with the project on `--app-dir`) so that no developer's
    `.env` gets in. A free-tier user may send one message a day.
    """
    settings = {
        "AUTH_JWKS_URL": f"{auth_url}/api/auth/jwks",
        "AUTH_JWT_ISSUER": auth_url,
        "AUTH_JWT_AUDIENCE": f"http://127.0.0.1:{port}",
        "CORS_ALLOW_ORIGINS": auth_url,
        "RATE_LIMIT_DAILY_MESSAGES": "free=1,pro=unlimited",
    }
    workdir = tmp_path / "backend"
    workdir.mkdir()
    return app_server(workdir, database_url, settings, port=port)


@pytest.fixture
def servers(tmp_path: Path, postgres_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """(the example, the backend), each on its own loopback port."""
    install_example()
    auth_port, backend_port = free_port(), free_port()
    auth_url = f"http://127.0.0.1:{auth_port}"
    backend_url = f"http://127.0.0.1:{backend_port}"
    with (
        example_server(
            tmp_path,
            port=auth_port,
            chatkit_url=f"{backend_url}/chatkit",
            secret=secrets.token_hex(32),
        ) as auth,
        backend_server(
            tmp_path, port=backend_port, database_url=postgres_url, auth_url=auth_url
        ) as backend,
    ):
        yield auth, backend


def sign_up(browser: httpx.Client, **extra: str) -> dict[str, Any]:
    """Ada signs up through Better Auth's API (the browser keeps her session cookie)."""
    signed_up = browser.post(
        "/api/auth/sign-up/email",
        json={"name": "Ada", "email": "ada@example.com", "password": PASSWORD, **extra},
    )
    assert signed_up.status_code == 200, signed_up.text
    user: dict[str, Any] = signed_up.json()["user"]
    return user


def fresh_token(browser: httpx.Client) -> str:
    """What the example's page does before each message: GET /api/auth/token with the cookie."""
    response = browser.get("/api/auth/token")
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def claims_of(token: str) -> dict[str, Any]:
    """The payload as Better Auth wrote it (the backend is the one that verifies it)."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def chat(backend: ServerProcess, token: str, text: str) -> httpx.Response:
    return httpx.post(
        f"{backend.base_url}/chatkit",
        json=create_thread_req(text),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


async def thread_owner(database_url: str, thread_id: str) -> str | None:
    engine = create_engine(conftest.make_settings(database_url))
    try:
        async with engine.connect() as connection:
            owner: str | None = await connection.scalar(
                select(ThreadRow.user_id).where(ThreadRow.id == thread_id)
            )
            return owner
    finally:
        await engine.dispose()


def test_a_better_auth_user_chats_with_an_eddsa_token_and_cannot_raise_their_tier(
    servers: tuple[ServerProcess, ServerProcess], postgres_url: str
) -> None:
    auth, backend = servers
    # The example's own page is a browser on the example's origin: Better Auth checks `Origin`
    # on cookie-carrying POSTs, and the backend's CORS must allow that origin.
    with httpx.Client(base_url=auth.base_url, headers={"Origin": auth.base_url}) as browser:
        user = sign_up(browser, tier="pro")
        assert user["tier"] == "free"  # sign-up ignores a tier the user sends

        token = fresh_token(browser)
        assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
        claims = claims_of(token)
        assert claims["sub"] == user["id"]
        assert (claims["iss"], claims["aud"]) == (auth.base_url, backend.base_url)
        assert claims["tier"] == "free"

        # The backend's own pages (its /playground) may fetch the token with the cookie.
        cross_origin = browser.get("/api/auth/token", headers={"Origin": backend.base_url})
        assert cross_origin.status_code == 200, cross_origin.text
        assert cross_origin.headers["access-control-allow-origin"] == backend.base_url
        assert cross_origin.headers["access-control-allow-credentials"] == "true"

        # The example's page calls the backend it is configured for, and its CSP lets it.
        config = browser.get("/config.json").json()
        assert config == {"chatkitUrl": f"{backend.base_url}/chatkit"}
        csp = browser.get("/").headers["content-security-policy"]
        assert f"connect-src 'self' {backend.base_url}" in csp

        preflight = httpx.options(
            f"{backend.base_url}/chatkit",
            headers={
                "Origin": auth.base_url,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == auth.base_url

        # Identity comes from the token alone: this backend trusts no X-User-Id header.
        anonymous = httpx.post(
            f"{backend.base_url}/chatkit",
            json=create_thread_req("Hello"),
            headers={"X-User-Id": user["id"]},
        )
        assert anonymous.status_code == 401, anonymous.text

        answered = chat(backend, token, "Hello from Better Auth")
        assert answered.status_code == 200, f"{answered.text}\n{backend.log()}"
        events = sse_events(answered)
        assert event_types(events)[0] == "thread.created"
        assert [e for e in events if e["type"] == "error"] == []
        assert any(
            e["type"] == "thread.item.done" and e["item"]["type"] == "assistant_message"
            for e in events
        ), events
        thread_id = events[0]["thread"]["id"]
        assert asyncio.run(thread_owner(postgres_url, thread_id)) == user["id"]

        # The attack of issue 11: raise your own tier, take a fresh token, keep chatting.
        raised = browser.post("/api/auth/update-user", json={"tier": "pro"})
        assert raised.status_code == 400, raised.text
        assert raised.json()["code"] == "FIELD_NOT_ALLOWED"
        retoken = fresh_token(browser)
        assert claims_of(retoken)["tier"] == "free"
        refused = chat(backend, retoken, "One more, on the house?")
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "quota_exceeded"
        assert "on the free plan" in refused.json()["message"]


def test_the_example_keeps_its_users_sessions_and_signing_key_across_a_restart(
    tmp_path: Path,
) -> None:
    """Everything lives in the SQLite file at DATABASE_PATH (the image's `data/` volume)."""
    install_example()
    port, secret = free_port(), secrets.token_hex(32)
    unused_backend = "http://127.0.0.1:8000/chatkit"  # never called here
    base_url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base_url, headers={"Origin": base_url}) as browser:
        with example_server(tmp_path, port=port, chatkit_url=unused_backend, secret=secret):
            user = sign_up(browser)
            key_id = jwt.get_unverified_header(fresh_token(browser))["kid"]
        assert (tmp_path / "auth" / "auth.db").is_file()

        with example_server(tmp_path, port=port, chatkit_url=unused_backend, secret=secret):
            session = browser.get("/api/auth/get-session")
            assert session.status_code == 200, session.text
            assert session.json()["user"]["id"] == user["id"]
            token = fresh_token(browser)
            assert jwt.get_unverified_header(token)["kid"] == key_id
            assert claims_of(token)["sub"] == user["id"]
            keys = browser.get("/api/auth/jwks").json()["keys"]
            assert [key["kid"] for key in keys] == [key_id]

            signed_in = browser.post(
                "/api/auth/sign-in/email", json={"email": "ada@example.com", "password": PASSWORD}
            )
            assert signed_in.status_code == 200, signed_in.text
            assert signed_in.json()["user"]["id"] == user["id"]
