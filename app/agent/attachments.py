"""Attachments as model input: images as `input_image`, PDFs and text files as `input_file`.

The SDK's `ThreadItemConverter.attachment_to_message_content(attachment)` has no context, so
`app.agent.converter.HistoryConverter` is built per turn with the attachment store and the
`RequestContext`, and calls this.

Over Chat Completions (`MODEL_API=chat_completions`), images still go as images (the Agents SDK
sends them as `image_url` parts) and text files as text parts, which every such server takes.
A PDF cannot go at all: sent with a new message, it ends the turn with an error event that says
so; in older messages it becomes a note, so the thread stays usable.

Files the model cannot read become a short text note, so one odd file never fails a turn.
"""

from __future__ import annotations

import base64
import logging

from chatkit.errors import CustomStreamError
from chatkit.types import Attachment
from openai.types.responses import (
    ResponseInputContentParam,
    ResponseInputFileParam,
    ResponseInputImageParam,
    ResponseInputTextParam,
)

from app.config import ModelApi
from app.context import RequestContext
from app.store.attachments import Attachments
from app.store.files import FileStorageError

logger = logging.getLogger(__name__)

MODEL_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
"""Image formats the Responses API accepts as `input_image`."""
TEXT_FILE_TYPES = frozenset({"application/json", "application/xml", "application/x-yaml"})
"""Besides `text/*`, formats that are text: Chat Completions gets them as text parts."""
MODEL_FILE_TYPES = TEXT_FILE_TYPES | {"application/pdf"}
"""Besides `text/*`, file formats given to the model as `input_file` (Responses API)."""


def data_url(mime_type: str, data: bytes) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"


def is_model_file_type(mime_type: str) -> bool:
    return mime_type.startswith("text/") or mime_type in MODEL_FILE_TYPES


def is_text_type(mime_type: str) -> bool:
    return mime_type.startswith("text/") or mime_type in TEXT_FILE_TYPES


async def attachment_to_model_input(
    attachment: Attachment,
    attachments: Attachments,
    context: RequestContext,
    *,
    api: ModelApi = "responses",
    new_message: bool = True,
) -> ResponseInputContentParam:
    """The content part for one attachment of the caller's, read from file storage.

    `new_message`: whether it came with the message being answered (over Chat Completions, a
    file that cannot be sent then fails the turn, rather than being skipped unsaid).
    """
    mime_type = attachment.mime_type.lower()
    try:
        data = await attachments.read_content(attachment.id, context.user_id)
    except FileStorageError:
        logger.warning("Could not read attachment %s for the model", attachment.id, exc_info=True)
        return _note(f"[Attachment {attachment.name!r} could not be read right now.]")
    if data is None:
        return _note(f"[Attachment {attachment.name!r} is not available.]")
    if mime_type in MODEL_IMAGE_TYPES:
        return ResponseInputImageParam(
            type="input_image", detail="auto", image_url=data_url(mime_type, data)
        )
    if api == "chat_completions" and is_text_type(mime_type):
        text = data.decode("utf-8", errors="replace")
        return _note(f"[The user attached {attachment.name!r} ({mime_type}):]\n{text}")
    if api == "chat_completions" and is_model_file_type(mime_type):
        if new_message:
            raise CustomStreamError(
                f"This assistant's model is reached through the Chat Completions API, which "
                f"cannot read {attachment.name!r} ({mime_type}): it takes images and text "
                "files only. Paste the text you need instead.",
                allow_retry=False,
            )
        return _note(f"[The user attached {attachment.name!r} ({mime_type}), unreadable here.]")
    if is_model_file_type(mime_type):
        return ResponseInputFileParam(
            type="input_file", file_data=data_url(mime_type, data), filename=attachment.name
        )
    return _note(
        f"[The user attached {attachment.name!r} ({mime_type}), a format you cannot read.]"
    )


def _note(text: str) -> ResponseInputTextParam:
    return ResponseInputTextParam(type="input_text", text=text)
