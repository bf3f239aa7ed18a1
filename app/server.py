"""The ChatKit server: the SDK's `ChatKitServer` bound to our store and identity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.store import NotFoundError
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ChatKitReq,
    ItemsFeedbackReq,
    ItemsListReq,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsListReq,
    ThreadsRetryAfterItemReq,
    ThreadStreamEvent,
    UserMessageItem,
    UserMessageTextContent,
)
from pydantic import TypeAdapter

from app.context import RequestContext
from app.store.attachments import DatabaseAttachmentStore
from app.store.store import SQLAlchemyStore

REQUEST_ADAPTER: TypeAdapter[ChatKitReq] = TypeAdapter(ChatKitReq)


class BadRequestError(ValueError):
    """A request the SDK would accept but that cannot succeed; becomes a 400."""


class ChatKitBackend(ChatKitServer[RequestContext]):
    """Routes ChatKit requests to the store and the agent."""

    def __init__(self, store: SQLAlchemyStore, attachment_store: DatabaseAttachmentStore) -> None:
        super().__init__(store, attachment_store)
        self.store: SQLAlchemyStore = store
        self.attachments = attachment_store

    async def process(
        self, request: str | bytes | bytearray, context: RequestContext
    ) -> StreamingResult | NonStreamingResult:
        """Check what the SDK would only discover after writing, then hand the request to it."""
        await self._check(REQUEST_ADAPTER.validate_json(request), context)
        return await super().process(request, context)

    async def _check(self, request: ChatKitReq, context: RequestContext) -> None:
        match request:
            case ThreadsCreateReq() | ThreadsAddUserMessageReq():
                # threads.create saves the thread before it loads the attachments: a bad id
                # would leave an empty thread behind.
                await self.attachments.check_message_attachments(
                    request.params.input.attachments,
                    getattr(request.params, "thread_id", None),
                    context,
                )
            case ThreadsRetryAfterItemReq():
                # The SDK silently streams nothing for an unknown item.
                item = await self.store.load_item(
                    request.params.thread_id, request.params.item_id, context
                )
                if not isinstance(item, UserMessageItem):
                    raise BadRequestError(f"Item {item.id} is not a user message")
            case ItemsFeedbackReq():
                # The SDK's `add_feedback` is a no-op: another user's ids must still be a 404.
                await self.store.load_thread(request.params.thread_id, context)
                for item_id in request.params.item_ids:
                    await self.store.load_item(request.params.thread_id, item_id, context)
            case ThreadsListReq() | ItemsListReq():
                if request.params.limit is not None and request.params.limit < 1:
                    raise BadRequestError("params.limit must be at least 1")
            case _:
                pass

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: RequestContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        """Placeholder reply until the agent lands: echo the user's text."""
        text = ""
        if input_user_message is not None:
            text = " ".join(
                part.text
                for part in input_user_message.content
                if isinstance(part, UserMessageTextContent)
            )
        yield ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=self.store.generate_item_id("message", thread, context),
                thread_id=thread.id,
                created_at=datetime.now(),
                content=[AssistantMessageContent(text=f"You said: {text}")],
            )
        )


__all__ = ["BadRequestError", "ChatKitBackend", "NotFoundError"]
