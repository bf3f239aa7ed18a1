"""The reference for the benchmark: the minimal server the openai-chatkit docs show.

An in-memory store, no authentication, the SDK's history converter (on Chat Completions, with
the one change that API needs), the agent streamed with `stream_agent_response`; the
agent itself (instructions, tools, model client) is the real server's, built from the same
settings, so both send the model the same requests. Every figure the benchmark prints is also
a ratio to this.
Run: `python -m bench.reference_server` with OPENAI_BASE_URL, OPENAI_API_KEY, CHATKIT_MODEL,
MODEL_API, PORT.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from agents import Agent, Runner, TResponseInputItem, set_tracing_disabled
from chatkit.agents import AgentContext, ThreadItemConverter, stream_agent_response
from chatkit.server import ChatKitServer, StreamingResult
from chatkit.store import NotFoundError, Store
from chatkit.types import (
    AssistantMessageItem,
    Attachment,
    Page,
    ThreadItem,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
)
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

from app.agent.config import load_agent_config
from app.agent.converter import assistant_text_message
from app.agent.factory import build_agent
from app.agent.model import build_model, build_model_client
from app.config import Settings
from app.context import RequestContext

HISTORY = 30
CALLER = RequestContext(user_id="reference", auth_method="development")
"""The agent's instructions read the caller; the reference has no authentication."""


class MemoryStore(Store[dict[str, Any]]):
    """Threads and items in dictionaries: what the docs' starter keeps."""

    def __init__(self) -> None:
        self.threads: dict[str, ThreadMetadata] = {}
        self.items: dict[str, list[ThreadItem]] = {}
        self.attachments: dict[str, Attachment] = {}

    async def load_thread(self, thread_id: str, context: dict[str, Any]) -> ThreadMetadata:
        if thread_id not in self.threads:
            raise NotFoundError(f"Thread {thread_id} not found")
        return self.threads[thread_id].model_copy(deep=True)

    async def save_thread(self, thread: ThreadMetadata, context: dict[str, Any]) -> None:
        self.threads[thread.id] = ThreadMetadata(**thread.model_dump(exclude={"items"}))
        self.items.setdefault(thread.id, [])

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: dict[str, Any]
    ) -> Page[ThreadMetadata]:
        threads = sorted(self.threads.values(), key=lambda t: t.created_at, reverse=order == "desc")
        return _page(threads, after, limit)

    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: dict[str, Any]
    ) -> Page[ThreadItem]:
        items = list(self.items.get(thread_id, []))
        if order == "desc":
            items.reverse()
        return _page(items, after, limit)

    async def add_thread_item(
        self, thread_id: str, item: ThreadItem, context: dict[str, Any]
    ) -> None:
        await self.save_item(thread_id, item, context)

    async def save_item(self, thread_id: str, item: ThreadItem, context: dict[str, Any]) -> None:
        items = self.items.setdefault(thread_id, [])
        for index, existing in enumerate(items):
            if existing.id == item.id:
                items[index] = item
                return
        items.append(item)

    async def load_item(self, thread_id: str, item_id: str, context: dict[str, Any]) -> ThreadItem:
        for item in self.items.get(thread_id, []):
            if item.id == item_id:
                return item
        raise NotFoundError(item_id)

    async def delete_thread(self, thread_id: str, context: dict[str, Any]) -> None:
        self.threads.pop(thread_id, None)
        self.items.pop(thread_id, None)

    async def delete_thread_item(
        self, thread_id: str, item_id: str, context: dict[str, Any]
    ) -> None:
        self.items[thread_id] = [i for i in self.items.get(thread_id, []) if i.id != item_id]

    async def save_attachment(self, attachment: Attachment, context: dict[str, Any]) -> None:
        self.attachments[attachment.id] = attachment

    async def load_attachment(self, attachment_id: str, context: dict[str, Any]) -> Attachment:
        if attachment_id not in self.attachments:
            raise NotFoundError(attachment_id)
        return self.attachments[attachment_id]

    async def delete_attachment(self, attachment_id: str, context: dict[str, Any]) -> None:
        self.attachments.pop(attachment_id, None)


def _page(rows: list[Any], after: str | None, limit: int) -> Page[Any]:
    start = 0
    if after:
        start = next((n + 1 for n, row in enumerate(rows) if row.id == after), len(rows))
    data = rows[start : start + limit]
    has_more = start + limit < len(rows)
    return Page(data=data, has_more=has_more, after=data[-1].id if has_more and data else None)


class ChatCompletionsConverter(ThreadItemConverter):
    """The docs' converter, plus the one change Chat Completions needs (see `HistoryConverter`)."""

    async def assistant_message_to_input(
        self, item: AssistantMessageItem
    ) -> TResponseInputItem | list[TResponseInputItem] | None:
        return assistant_text_message(item)


class ReferenceServer(ChatKitServer[dict[str, Any]]):
    def __init__(self, agent: Agent[Any], converter: ThreadItemConverter) -> None:
        self.memory = MemoryStore()
        super().__init__(self.memory)
        self.agent = agent
        self.converter = converter

    async def respond(
        self, thread: ThreadMetadata, input_user_message: UserMessageItem | None, context: Any
    ) -> AsyncIterator[ThreadStreamEvent]:
        recent = await self.memory.load_thread_items(thread.id, None, HISTORY, "desc", context)
        items = list(reversed(recent.data))
        agent_context: AgentContext[Any] = AgentContext(
            thread=thread, store=self.memory, request_context=CALLER
        )
        result = Runner.run_streamed(
            self.agent, await self.converter.to_agent_input(items), context=agent_context
        )
        async for event in stream_agent_response(agent_context, result):
            yield event


def create_reference_app() -> FastAPI:
    set_tracing_disabled(True)
    # OPENAI_* and MODEL_API from the environment
    settings = Settings(_env_file=None, model_provider="openai")
    client = build_model_client(settings)
    assert client is not None, "set OPENAI_API_KEY or OPENAI_BASE_URL"
    agent = build_agent(
        load_agent_config(settings, {}), build_model(settings, client), client.model_settings
    )
    chat = settings.model_api == "chat_completions"
    server = ReferenceServer(agent, ChatCompletionsConverter() if chat else ThreadItemConverter())
    app = FastAPI()

    @app.post("/chatkit")
    async def chatkit(request: Request) -> Response:
        result = await server.process(await request.body(), {})
        if isinstance(result, StreamingResult):
            return StreamingResponse(result, media_type="text/event-stream")
        return Response(content=result.json, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    uvicorn.run(
        create_reference_app(),
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8001")),
        log_level="warning",
    )
