"""Attachments as model input: images as `input_image`, PDFs and text files as `input_file`.

The SDK's `ThreadItemConverter.attachment_to_message_content(attachment)` has no context, so
`app.agent.converter.HistoryConverter` is built per turn with the attachment store and the
`RequestContext`, and calls this.

Files the model cannot read become a short text note, so one odd file never fails a turn.
"""

from __future__ import annotations

import base64
import logging

from chatkit.types import Attachment
from openai.types.responses import (
    ResponseInputContentParam,
    ResponseInputFileParam,
    ResponseInputImageParam,
    ResponseInputTextParam,
)

from app.context import RequestContext
from app.store.attachments import Attachments
from app.store.files import FileStorageError

logger = logging.getLogger(__name__)

MODEL_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
"""Image formats the Responses API accepts as `input_image`."""
MODEL_FILE_TYPES = frozenset(
    {"application/pdf", "application/json", "application/xml", "application/x-yaml"}
)
"""Besides `text/*`, file formats given to the model as `input_file`."""


def data_url(mime_type: str, data: bytes) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"


def is_model_file_type(mime_type: str) -> bool:
    return mime_type.startswith("text/") or mime_type in MODEL_FILE_TYPES


async def attachment_to_model_input(
    attachment: Attachment, attachments: Attachments, context: RequestContext
) -> ResponseInputContentParam:
    """The content part for one attachment of the caller's, read from file storage."""
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
    if is_model_file_type(mime_type):
        return ResponseInputFileParam(
            type="input_file", file_data=data_url(mime_type, data), filename=attachment.name
        )
    return _note(
        f"[The user attached {attachment.name!r} ({mime_type}), a format you cannot read.]"
    )


def _note(text: str) -> ResponseInputTextParam:
    return ResponseInputTextParam(type="input_text", text=text)
