"""Real-browser tests: Debian's Chromium driven by Playwright, against a real server process.

ChatKit's bundle lives on OpenAI's CDN, which tests cannot reach: its URL is answered with
`tests/browser/chatkit_standin.js`, a stand-in that checks a page's wiring, not ChatKit's UI.
Every other request that leaves for an origin the test did not allow is aborted and recorded.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Request, Route

from app.store.db import PROJECT_ROOT
from tests.helpers.server import ServerProcess, base_environment, free_port, running_server

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


async def new_context(browser: Browser) -> BrowserContext:
    context = await browser.new_context()
    context.set_default_timeout(10_000)
    return context


@contextmanager
def backend(database_url: str, log_dir: Path, **settings: str) -> Iterator[ServerProcess]:
    """This project's server as uvicorn runs it, on a free loopback port, fake model, no .env."""
    port = free_port()
    env = base_environment(
        DATABASE_URL=database_url,
        ENVIRONMENT="development",
        MODEL_PROVIDER="fake",
        FAKE_MODEL_DELAY_MS="0",
        FAKE_MODEL_TOKENS="12",
        ATTACHMENT_CLEANUP_INTERVAL_SECONDS="0",
        **settings,
    )
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--app-dir", str(PROJECT_ROOT)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with running_server(
        command,
        port=port,
        env=env,
        cwd=log_dir,
        log_path=log_dir / "server.log",
        startup_timeout=60,  # the app's imports take seconds on a busy machine
    ) as server:
        yield server
