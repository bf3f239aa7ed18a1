"""Thread items to model input: the SDK's converter, made safe for every item we store."""

from __future__ import annotations

import json

from agents import TResponseInputItem
from chatkit.agents import ThreadItemConverter
from chatkit.types import HiddenContextItem, UserMessageTagContent
from openai.types.responses import ResponseInputContentParam, ResponseInputTextParam


class HistoryConverter(ThreadItemConverter):
    """Renders @-tags and structured hidden context as text instead of failing the turn."""

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
