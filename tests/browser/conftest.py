"""Chromium (Debian's package: Playwright cannot download its own), a context per test, and the
test database for reading what the server wrote."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, BrowserContext, async_playwright
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.db import create_engine
from tests.conftest import make_settings
from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context()
    context.set_default_timeout(10_000)
    yield context
    await context.close()


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(make_settings(postgres_url))
    yield engine
    await engine.dispose()
