"""The docs' frontend snippets (docs/snippets/, shown verbatim in the docs) in Chromium.

What this proves: each snippet loads as written, hands `setOptions` the `api.url` and options the
docs promise, and its `fetch` keeps ChatKit's headers while adding the caller's identity, so real
requests reach the real server from another origin (the page's, which the server lists in
`CORS_ALLOW_ORIGINS` as the docs say) and the server's rows name the right user. The React
snippets are type-checked against `@openai/chatkit-react`'s types and bundled with esbuild
(`npm ci` from tests/browser/package-lock.json).

What it cannot prove: that ChatKit's own bundle behaves the same way. Its CDN script is answered
with `chatkit_standin.js`, which checks the page's wiring, not ChatKit's UI.

The snippets address `http://localhost:8000`; the test's server runs on another port, so that
one constant is replaced when a snippet is served or bundled.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import jwt
import pytest
from playwright.async_api import BrowserContext, FilePayload
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.db import PROJECT_ROOT
from app.store.models import AttachmentRow, ThreadRow
from tests.helpers import browser as harness
from tests.helpers.server import ServerProcess

SNIPPETS = PROJECT_ROOT / "docs" / "snippets"
BROWSER_TESTS = PROJECT_ROOT / "tests" / "browser"
DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
DOCUMENTED_API = "http://localhost:8000"
AUTH = "http://localhost:3000"  # bearer-token.ts's Better Auth app
BROWSER_LANGUAGES = {"html", "js", "jsx", "ts", "tsx"}
# A fenced block, with the marker line before it if any: `<!-- snippet: docs/snippets/NAME -->`
# (the block is that file, verbatim) or `<!-- server code -->` (not for a browser).
FENCE = re.compile(
    r"^(?:<!-- (?:snippet: (?P<path>\S+)|(?P<server>server code)) -->\n)?"
    r"```(?P<lang>\w*)\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)


# ---- The docs show the snippet files, verbatim ----


def test_every_frontend_snippet_in_the_docs_is_a_tested_file() -> None:
    """Browser code in the docs is a docs/snippets file, shown verbatim, so this module loads it."""
    shown: set[str] = set()
    for doc in DOCS:
        for block in FENCE.finditer(doc.read_text()):
            where = f"{doc.name}: a {block['lang'] or 'plain'} block"
            if block["path"]:
                path = PROJECT_ROOT / block["path"]
                assert path.parent == SNIPPETS, f"{where} names {block['path']}"
                assert block["code"] == path.read_text(), f"{where} differs from {block['path']}"
                shown.add(path.name)
            elif block["lang"] in BROWSER_LANGUAGES:
                assert block["server"], (
                    f"{where} is no docs/snippets file, so the browser test does not load it:\n"
                    f"{block['code']}"
                )
    assert shown == {path.name for path in SNIPPETS.iterdir()}


# ---- The React snippets: installed, type-checked, bundled ----


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """`npm ci` from the committed lock file, once (xdist workers take turns on a lock)."""
    npm = shutil.which("npm")
    if npm is None:
        message = "npm is missing: install Node.js 20+"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    lock = BROWSER_TESTS / "package-lock.json"
    installed = BROWSER_TESTS / "node_modules" / ".package-lock.json"
    with (BROWSER_TESTS / ".npm-ci.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
            run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"])
    return BROWSER_TESTS / "node_modules"


def run(command: list[str]) -> None:
    result = subprocess.run(
        command, cwd=BROWSER_TESTS, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"


def test_react_snippets_type_check(node_modules: Path) -> None:
    """The option names are the ones `@openai/chatkit`'s types declare (a typo fails here)."""
    run([str(node_modules / ".bin" / "tsc"), "-p", "tsconfig.json"])


@pytest.fixture(scope="module")
def site() -> Iterator[harness.StaticSite]:
    """The frontend's origin: where the snippet pages are served from."""
    with harness.StaticSite() as site:
        yield site


@pytest.fixture(scope="module")
def server(
    postgres_url: str, site: harness.StaticSite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Header identity for the web component's local-demo snippet, tokens for the React ones;
    the page's origin in CORS_ALLOW_ORIGINS."""
    with harness.backend(
        postgres_url,
        tmp_path_factory.mktemp("snippets"),
        AUTH_TRUST_USER_HEADERS="true",
        AUTH_JWT_SECRET=harness.JWT_SECRET,
        CORS_ALLOW_ORIGINS=site.origin,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def react_site(
    node_modules: Path,
    site: harness.StaticSite,
    server: ServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> harness.StaticSite:
    """index.html, and the React snippets bundled as the `/src/main.tsx` it loads."""
    bundle = tmp_path_factory.mktemp("react") / "main.js"
    run(["node", str(node_modules.parent / "build.mjs"), server.base_url, str(bundle)])
    site.files["/react"] = ((SNIPPETS / "index.html").read_bytes(), "text/html")
    site.files["/src/main.tsx"] = (bundle.read_bytes(), "text/javascript")
    return site


# ---- Loading them ----


def retargeted(snippet: str, server: ServerProcess) -> str:
    text = (SNIPPETS / snippet).read_text()
    assert f'"{DOCUMENTED_API}"' in text, f"{snippet} no longer addresses {DOCUMENTED_API}"
    return text.replace(DOCUMENTED_API, server.base_url)


def notes(name: str) -> FilePayload:
    return FilePayload(name=name, mimeType="text/plain", buffer=b"milk, eggs")


async def open_snippet(
    context: BrowserContext,
    site: harness.StaticSite,
    server: ServerProcess,
    path: str,
    routes: dict[str, harness.RouteHandler] | None = None,
) -> harness.Watched:
    watched = await harness.watched_page(context, [site.origin, server.base_url], routes=routes)
    await watched.page.goto(site.origin + path)
    return watched


async def test_web_component_snippet(
    context: BrowserContext, site: harness.StaticSite, server: ServerProcess, engine: AsyncEngine
) -> None:
    site.files["/chatkit.html"] = (retargeted("chatkit.html", server).encode(), "text/html")
    watched = await open_snippet(context, site, server, "/chatkit.html")
    chat = harness.chat_of(watched)
    options = await chat.evaluate(harness.OPTIONS_SUMMARY)
    assert {key: options[key] for key in ("url", "domainKey", "fetch", "uploadStrategy")} == {
        "url": f"{server.base_url}/chatkit",
        "domainKey": "local-dev",
        "fetch": "function",
        "uploadStrategy": {"type": "two_phase"},
    }

    await harness.attach(chat, notes("web-component.txt"))
    await harness.send(chat, "Hello from the docs")
    await harness.items(chat, "assistant_message").last.wait_for()
    thread_id = await chat.get_attribute("data-thread-id")
    [thread] = await harness.rows(engine, ThreadRow, id=thread_id)
    assert thread.user_id == "alice"
    [attachment] = await harness.rows(engine, AttachmentRow, thread_id=thread_id)
    assert (attachment.user_id, attachment.data["name"]) == ("alice", "web-component.txt")

    for request in watched.sent("POST", f"{server.base_url}/chatkit"):
        headers = await request.all_headers()
        assert headers["origin"] == site.origin
        if "/attachments/" not in request.url:
            assert (headers["x-user-id"], headers["content-type"]) == ("alice", "application/json")
    assert await watched.problems() == []


@pytest.mark.parametrize("snippet", ["chat", "direct"])
async def test_react_snippets(
    context: BrowserContext,
    react_site: harness.StaticSite,
    server: ServerProcess,
    engine: AsyncEngine,
    snippet: str,
) -> None:
    """`<Chat getToken={bearerToken} />` (two-phase uploads) and `<DirectUploadChat />`."""
    user = f"react-{snippet}-{uuid4().hex[:8]}"
    cookies: list[str | None] = []
    await context.add_cookies([{"name": "session", "value": "s1", "url": AUTH}])
    token_url = f"{AUTH}/api/auth/token"
    routes = {token_url: harness.token_endpoint(react_site.origin, user, cookies)}
    watched = await open_snippet(context, react_site, server, f"/react?snippet={snippet}", routes)
    chat = harness.chat_of(watched)
    await chat.locator("[data-part=composer]").wait_for()  # React has called setOptions
    options = await chat.evaluate(harness.OPTIONS_SUMMARY)
    upload = (
        {"type": "two_phase"}
        if snippet == "chat"
        else {"type": "direct", "uploadUrl": f"{server.base_url}/chatkit/attachments"}
    )
    assert (options["url"], options["fetch"], options["uploadStrategy"]) == (
        f"{server.base_url}/chatkit",
        "function",
        upload,
    )

    await harness.attach(chat, notes(f"{snippet}.txt"))
    await harness.send(chat, "Hello from React")
    await harness.items(chat, "assistant_message").last.wait_for()
    thread_id = await chat.get_attribute("data-thread-id")
    [thread] = await harness.rows(engine, ThreadRow, id=thread_id)
    assert thread.user_id == user
    [attachment] = await harness.rows(engine, AttachmentRow, thread_id=thread_id)
    assert attachment.user_id == user
    assert cookies == ["session=s1"]  # one token fetch, with the session cookie

    sent = watched.sent("POST", f"{server.base_url}/chatkit")
    direct = [r for r in sent if r.url == f"{server.base_url}/chatkit/attachments"]
    assert len(direct) == (1 if snippet == "direct" else 0)
    for request in sent:
        headers = await request.all_headers()
        if request.url.split("?")[0].endswith("/upload"):  # two-phase: a signed URL
            assert "authorization" not in headers
        else:
            if request not in direct:
                assert headers["content-type"] == "application/json"
            scheme, token = headers["authorization"].split(" ")
            claims = jwt.decode(token, harness.JWT_SECRET, algorithms=["HS256"])
            assert (scheme, claims["sub"]) == ("Bearer", user)
    assert await watched.problems() == []
