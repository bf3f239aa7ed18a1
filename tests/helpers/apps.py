"""The app under test: built from settings, its lifespan running, with a client talking to it.

    async with running_app(make_settings(url)) as running:
        await running.client.post("/chatkit", ...)
        running.services.store  # what the app serves with, to look inside

By default the client calls the app in process (httpx's ASGI transport, which hands back whole
responses). `socket=True` serves the app with uvicorn on a loopback port instead, for what only
a real connection does: streaming to a client that reads as it goes, or leaves mid-stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from app.agent.fake_model import FakeModel
from app.config import Settings
from app.main import create_app
from app.services import Services
from tests.helpers.live_server import serve


@dataclass(frozen=True)
class RunningApp:
    app: FastAPI
    services: Services
    client: httpx.AsyncClient

    @property
    def fake_model(self) -> FakeModel:
        return fake_model_of(self.services)


def fake_model_of(services: Services) -> FakeModel:
    """The configured reply model, which the test settings make the fake one."""
    model = services.assistant.setup.model
    assert isinstance(model, FakeModel)
    return model


@asynccontextmanager
async def running_app(
    settings: Settings, *, services: Services | None = None, socket: bool = False
) -> AsyncIterator[RunningApp]:
    """`services` replaces what `settings` would build (a test's own server, say)."""
    services = services or Services.build(settings)
    app = create_app(services=services)
    async with AsyncExitStack() as stack:
        if socket:
            base_url = await stack.enter_async_context(serve(app, lifespan="on"))
            transport = None
        else:
            await stack.enter_async_context(app.router.lifespan_context(app))
            base_url, transport = "http://testserver", httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url=base_url)
        await stack.enter_async_context(client)
        yield RunningApp(app, services, client)
