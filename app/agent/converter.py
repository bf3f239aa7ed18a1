"""Thread items to model input: the SDK's converter, made safe for every item we store."""

from __future__ import annotations

import json
from collections.abc import Sequence

from agents import TResponseInputItem
from chatkit.agents import ThreadItemConverter
from chatkit.types import (
    AssistantMessageItem,
    Attachment,
    HiddenContextItem,
    ThreadItem,
    UserMessageItem,
    UserMessageTagContent,
)
from openai.types.responses import (
    EasyInputMessageParam,
    ResponseInputContentParam,
    ResponseInputTextParam,
)

from app.agent.attachments import TURN_ATTACHMENTS, TurnAttachments
from app.config import ModelApi


def assistant_text_message(item: AssistantMessageItem) -> EasyInputMessageParam:
    """A past answer as Chat Completions input: the Agents SDK's Chat Completions converter reads
    an assistant message's words as text, and refuses the `output_text` parts ChatKit's
    converter writes (openai-agents 0.24, openai-chatkit 1.6)."""
    text = "".join(part.text for part in item.content)
    return EasyInputMessageParam(type="message", role="assistant", content=text)


class HistoryConverter(ThreadItemConverter):
    """One turn's converter: gives the caller's attachments as `attachments` plans them, and
    writes the assistant's past answers, in the form the model's API takes; renders @-tags and
    structured hidden context as text instead of failing the turn."""

    def __init__(self, attachments: TurnAttachments, api: ModelApi = "responses") -> None:
        self.attachments = attachments
        self.api = api
        self._in_last_message = True

    async def to_agent_input(
        self, thread_items: Sequence[ThreadItem] | ThreadItem
    ) -> list[TResponseInputItem]:
        """Plan the attachments of the whole history first (the byte budget counts from the
        newest), and make them the current turn's, for its model calls (`TURN_ATTACHMENTS`)."""
        items = list(thread_items) if isinstance(thread_items, Sequence) else [thread_items]
        await self.attachments.prepare(items)
        TURN_ATTACHMENTS.set(self.attachments)
        return await super().to_agent_input(items)

    async def user_message_to_input(
        self, item: UserMessageItem, is_last_message: bool = True
    ) -> TResponseInputItem | list[TResponseInputItem] | None:
        self._in_last_message = is_last_message  # read by the attachments of this message
        return await super().user_message_to_input(item, is_last_message)

    async def attachment_to_message_content(
        self, attachment: Attachment
    ) -> ResponseInputContentParam:
        return await self.attachments.part(attachment, new=self._in_last_message)

    async def assistant_message_to_input(
        self, item: AssistantMessageItem
    ) -> TResponseInputItem | list[TResponseInputItem] | None:
        if self.api == "responses":
            return await super().assistant_message_to_input(item)
        return assistant_text_message(item)

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
