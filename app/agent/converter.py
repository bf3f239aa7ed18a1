"""Thread items to model input: the SDK's converter, made safe for every item we store."""

from __future__ import annotations

import json

from agents import TResponseInputItem
from chatkit.agents import ThreadItemConverter
from chatkit.types import (
    Attachment,
    HiddenContextItem,
    UserMessageItem,
    UserMessageTagContent,
)
from openai.types.responses import ResponseInputContentParam, ResponseInputTextParam

from app.agent.attachments import attachment_to_model_input
from app.config import ModelApi
from app.context import RequestContext
from app.store.attachments import DatabaseAttachmentStore


class HistoryConverter(ThreadItemConverter):
    """One turn's converter: reads the caller's attachments in the form the model's API takes,
    and renders @-tags and structured hidden context as text instead of failing the turn."""

    def __init__(
        self,
        attachments: DatabaseAttachmentStore,
        context: RequestContext,
        api: ModelApi = "responses",
    ) -> None:
        self.attachments = attachments
        self.context = context
        self.api = api
        self._in_last_message = True

    async def user_message_to_input(
        self, item: UserMessageItem, is_last_message: bool = True
    ) -> TResponseInputItem | list[TResponseInputItem] | None:
        self._in_last_message = is_last_message  # read by the attachments of this message
        return await super().user_message_to_input(item, is_last_message)

    async def attachment_to_message_content(
        self, attachment: Attachment
    ) -> ResponseInputContentParam:
        return await attachment_to_model_input(
            attachment,
            self.attachments,
            self.context,
            api=self.api,
            new_message=self._in_last_message,
        )

    async def tag_to_message_content(self, tag: UserMessageTagContent) -> ResponseInputContentParam:
        data = json.dumps(tag.data, default=str) if tag.data else "{}"
        return ResponseInputTextParam(type="input_text", text=f"@{tag.text}: {data}")

    async def hidden_context_to_input(
        self, item: HiddenContextItem
    ) -> TResponseInputItem | list[TResponseInputItem] | None:
        if isinstance(item.content, str):
            return await super().hidden_context_to_input(item)
        as_text = item.model_copy(update={"content": json.dumps(item.content, default=str)})
        return await super().hidden_context_to_input(as_text)
