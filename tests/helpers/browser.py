"""Real-browser tests: Debian's Chromium driven by Playwright, against a real server process.

ChatKit's bundle lives on OpenAI's CDN, which tests cannot reach: its URL is answered with
`tests/browser/chatkit_standin.js`, a stand-in that checks a page's wiring, not ChatKit's UI.
Every other request that leaves for an origin the test did not allow is aborted and recorded.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import BrowserContext, FilePayload, Locator, Page, Request, Route, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.store.db import PROJECT_ROOT
from tests.helpers.jwks import better_auth_claims, hmac_token
from tests.helpers.server import ServerProcess, app_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHATKIT_SCRIPT = "https://cdn.platform.openai.com/deployments/chatkit/chatkit.js"
STANDIN = PROJECT_ROOT / "tests" / "browser" / "chatkit_standin.js"
JWT_SECRET = "browser-tests-jwt-secret-0123456789abcdef"  # AUTH_JWT_SECRET of token servers

# Collected by an init script (which no page CSP applies to), read back by `Watched.problems`.
WATCH_SCRIPT = """
window.__problems = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__problems.push(`CSP ${event.effectiveDirective} blocked ${event.blockedURI}`);
});
"""

RouteHandler = Callable[[Route], Awaitable[None]]


def require_chromium() -> None:
    """Skip where Chromium is missing (a developer's machine); CI installs it, so fail there."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Watched:
    """A page, the requests it sent, and what was blocked or went wrong on it."""

    page: Page
    requests: list[Request] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def sent(self, method: str, url_prefix: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.url.startswith(url_prefix)]

    async def problems(self) -> list[str]:
        """CSP violations, uncaught errors and blocked requests; a working page has none."""
        reported: list[str] = await self.page.evaluate("window.__problems")
        return reported + self.errors + [f"blocked {url}" for url in self.blocked]


async def watched_page(
    context: BrowserContext,
    allowed_origins: list[str],
    routes: Mapping[str, RouteHandler] | None = None,
) -> Watched:
    """A new page where the CDN script is the stand-in, `routes` answer their URLs, requests to
    `allowed_origins` go out, and anything else is aborted and recorded."""
    page = await context.new_page()
    watched = Watched(page)

    async def block(route: Route) -> None:
        watched.blocked.append(route.request.url)
        await route.abort("blockedbyclient")

    async def standin(route: Route) -> None:
        await route.fulfill(path=STANDIN, content_type="text/javascript")

    await page.route(lambda url: origin(url) not in allowed_origins, block)
    await page.route(CHATKIT_SCRIPT, standin)
    for url, handler in (routes or {}).items():
        await page.route(url, handler)
    await page.add_init_script(WATCH_SCRIPT)
    page.on("request", lambda request: watched.requests.append(request))
    page.on("pageerror", lambda error: watched.errors.append(f"page error: {error}"))
    return watched


# What the page handed to its last setOptions, as data (functions reduced to their type).
OPTIONS_SUMMARY = """
(chat) => {
  const options = chat.optionsHistory.at(-1);
  return {
    calls: chat.optionsHistory.length,
    url: options.api.url,
    domainKey: options.api.domainKey,
    fetch: typeof options.api.fetch,
    uploadStrategy: options.api.uploadStrategy,
    theme: options.theme ?? null,
    prompts: options.startScreen?.prompts?.map((p) => p.label) ?? null,
    attachments: options.composer?.attachments ?? null,
    feedback: options.threadItemActions?.feedback ?? null,
    onClientTool: typeof options.onClientTool,
  };
}
"""


def chat_of(watched: Watched) -> Locator:
    return watched.page.locator("openai-chatkit")


async def settle(chat: Locator) -> None:
    """Wait until the stand-in has no request under way, and showed no error."""
    await expect(chat).to_have_attribute("data-state", "idle")
    await expect(chat.locator("[data-part=error]")).to_have_text("")


async def send(chat: Locator, text: str) -> None:
    """Type a message into the stand-in's composer and send it."""
    await chat.locator("textarea[name=message]").fill(text)
    await chat.get_by_role("button", name="Send").click()
    await settle(chat)


async def attach(chat: Locator, file: FilePayload) -> None:
    await chat.locator("input[name=file]").set_input_files(file)
    await settle(chat)


def items(chat: Locator, item_type: str) -> Locator:
    return chat.locator(f"[data-part=items] > li[data-item-type={item_type}]")


def token_for(user_id: str) -> str:
    """A Better Auth-like HS256 JWT for `user_id`, valid for 15 minutes under `JWT_SECRET`."""
    return hmac_token(JWT_SECRET.encode(), better_auth_claims(user_id, iss=None, aud=None))


def token_endpoint(page: str, user_id: str, cookies: list[str | None]) -> RouteHandler:
    """Better Auth's `GET /api/auth/token`, cross-origin: records the cookie each call carried,
    answers `{token}` for `user_id` with CORS for `page` (credentials allowed)."""

    async def handler(route: Route) -> None:
        cookies.append((await route.request.all_headers()).get("cookie"))
        await route.fulfill(
            json={"token": token_for(user_id)},
            headers={
                "Access-Control-Allow-Origin": page,
                "Access-Control-Allow-Credentials": "true",
            },
        )

    return handler


async def rows(engine: AsyncEngine, model: Any, **where: Any) -> list[Any]:
    """What the server wrote: the `model` rows matching `where`."""
    async with AsyncSession(engine) as session:
        return list((await session.scalars(select(model).filter_by(**where))).all())


class StaticSite:
    """Fixed files on a loopback port, addressed as `http://localhost:<port>`: the origin of a
    frontend's dev server (a page Playwright answered itself would count as public, and
    Chromium's local network checks would then refuse its requests to the backend)."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                body, content_type = site.files.get(urlsplit(self.path).path, (b"", ""))
                self.send_response(200 if content_type else 404)
                self.send_header("Content-Type", content_type or "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://localhost:{self.server.server_address[1]}"

    def __enter__(self) -> StaticSite:
        Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def backend(database_url: str, log_dir: Path, **settings: str) -> Iterator[ServerProcess]:
    """This project's server as uvicorn runs it, on a free loopback port, fake model, no .env."""
    quiet = {"FAKE_MODEL_TOKENS": "12", "ATTACHMENT_CLEANUP_INTERVAL_SECONDS": "0"}
    with app_server(log_dir, database_url, quiet | settings) as server:
        yield server
