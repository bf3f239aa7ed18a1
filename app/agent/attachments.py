"""Attachments as model input, each sent in full once and cheaply afterwards.

- **With a Files API** (`app.agent.provider_files`): the first turn that sends an attachment
  uploads it, and every turn refers to it by file id (`input_image` / `input_file`). A file id
  the provider no longer knows is uploaded again once, and the request retried
  (`TurnAttachments.refresh`, called by the models of `app.agent.model`).
- **Without one**: inline data URLs. Images go scaled down (`app.agent.renditions`), made once
  and kept (`app.store.model_files`); encoded forms are cached in memory. Past
  `ATTACHMENT_INLINE_BUDGET_BYTES` per request, older attachments become a short note naming
  the file: the model saw it when it was new. A new message's attachments always go.

Over Chat Completions images still go as images (`image_url` parts: that API has no image file
ids) and text files as text parts. A PDF goes by file id where there is a Files API; elsewhere
it cannot go at all: sent with a new message, it ends the turn with an error event that says so,
in older messages it becomes a note, so the thread stays usable.

Files the model cannot read become a short text note, so one odd file never fails a turn.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

import openai
from chatkit.errors import CustomStreamError
from chatkit.types import Attachment, ThreadItem, UserMessageItem
from openai.types.responses import (
    ResponseInputContentParam,
    ResponseInputFileParam,
    ResponseInputImageParam,
    ResponseInputTextParam,
)
from sqlalchemy.exc import SQLAlchemyError

from app.agent.provider_files import ProviderFiles
from app.agent.renditions import EncodedCache, image_rendition
from app.config import ModelApi
from app.context import RequestContext
from app.store.attachments import Attachments
from app.store.files import FileStorageError
from app.store.model_files import ModelFileStore, Rendition

logger = logging.getLogger(__name__)

MODEL_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
"""Image formats the Responses API accepts as `input_image`."""
TEXT_FILE_TYPES = frozenset({"application/json", "application/xml", "application/x-yaml"})
"""Besides `text/*`, formats that are text: Chat Completions gets them as text parts."""
MODEL_FILE_TYPES = TEXT_FILE_TYPES | {"application/pdf"}
"""Besides `text/*`, file formats given to the model as `input_file` (Responses API)."""
UPLOADS_AT_ONCE = 3
"""Uploads to the provider in flight at once, per turn (each holds its file in memory)."""

Route = Literal["file", "image", "data", "text", "refuse", "unreadable"]
"""How an attachment travels: by provider file id; inline as an image, a file's data URL or
text; refused (a new PDF over Chat Completions without a Files API); or as a note."""

TURN_ATTACHMENTS: ContextVar[TurnAttachments | None] = ContextVar("turn_attachments", default=None)
"""The attachments of the turn being run, for its model calls to refresh stale file ids."""


def data_url(mime_type: str, data: bytes) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"


def data_url_size(mime_type: str, size: int) -> int:
    return len(f"data:{mime_type};base64,") + 4 * ((size + 2) // 3)


def is_model_file_type(mime_type: str) -> bool:
    return mime_type.startswith("text/") or mime_type in MODEL_FILE_TYPES


def is_text_type(mime_type: str) -> bool:
    return mime_type.startswith("text/") or mime_type in TEXT_FILE_TYPES


def route(mime_type: str, api: ModelApi, files: ProviderFiles | None) -> Route:
    if mime_type in MODEL_IMAGE_TYPES:
        by_id = files is not None and files.takes_images and api == "responses"
        return "file" if by_id else "image"
    if is_text_type(mime_type):
        if api == "chat_completions":
            return "text"
        return "file" if files else "data"
    if is_model_file_type(mime_type):
        if files:
            return "file"
        return "refuse" if api == "chat_completions" else "data"
    return "unreadable"


class AttachmentInputs:
    """Per application: how attachments reach the model. `turn(context)` serves one turn;
    `forget` follows an attachment's deletion to its model copies."""

    def __init__(
        self,
        attachments: Attachments,
        store: ModelFileStore,
        files: ProviderFiles | None,
        *,
        api: ModelApi,
        inline_budget: int,
    ) -> None:
        self.attachments = attachments
        self.store = store
        self.files = files
        self.api = api
        self.inline_budget = inline_budget
        self.cache = EncodedCache()

    def turn(self, context: RequestContext) -> TurnAttachments:
        return TurnAttachments(self, context)

    async def forget(self, user_id: str, attachment_ids: Sequence[str]) -> None:
        """After attachments are deleted: drop their renditions, file ids and the provider's
        copies. Best effort: the attachments are gone already, so failures are only logged."""
        for attachment_id in attachment_ids:
            self.cache.discard((user_id, attachment_id))
        try:
            copies = await self.store.forget(user_id, attachment_ids)
        except (SQLAlchemyError, OSError):
            logger.exception(
                "Could not forget the model copies of %d attachments", len(attachment_ids)
            )
            return
        if copies and self.files is not None:
            await self.files.delete(copies)
        elif copies:
            logger.warning("%d provider files left behind: no Files API configured", len(copies))

    async def forget_user(self, user_id: str) -> int:
        """A user's data erasure: every rendition, file id and provider copy. Returns how many
        provider copies there were."""
        copies = await self.store.forget_user(user_id)
        if copies and self.files is not None:
            await self.files.delete(copies)
        return len(copies)


@dataclass
class Plan:
    route: Route
    new: bool
    send: bool = True
    """Inline routes: within the byte budget."""


@dataclass
class TurnAttachments:
    """One turn's attachments: planned once for the history (`prepare`), then one content part
    each (`part`). Uploads and renditions missing so far are made while planning."""

    inputs: AttachmentInputs
    context: RequestContext
    plans: dict[str, Plan] = field(default_factory=dict)
    file_ids: dict[str, str] = field(default_factory=dict)
    """Attachment id -> the provider's file id."""
    refs: dict[str, Attachment] = field(default_factory=dict)
    """File id -> attachment, for every file id this turn sent."""
    replaced: dict[str, str] = field(default_factory=dict)
    """Stale file id -> the id of its new upload."""
    refused: set[str] = field(default_factory=set)
    """Older attachments whose upload the provider refused."""
    inline_bytes: int = 0
    """The inline bytes this turn's request carries, as planned."""

    @property
    def user_id(self) -> str:
        return self.context.user_id

    async def prepare(self, history: Sequence[ThreadItem]) -> None:
        """Plan every attachment in `history`, newest first (the new message's come first)."""
        ordered: list[tuple[Attachment, bool]] = []
        for item in reversed(history):
            if isinstance(item, UserMessageItem):
                ordered.extend((a, item is history[-1]) for a in item.attachments)
        await self._plan(ordered)

    async def _plan(self, ordered: Sequence[tuple[Attachment, bool]]) -> None:
        api, files = self.inputs.api, self.inputs.files
        fresh = [(a, new) for a, new in ordered if a.id not in self.plans]
        for attachment, new in fresh:
            self.plans[attachment.id] = Plan(route(attachment.mime_type.lower(), api, files), new)
        by_file = [a for a, _ in fresh if self.plans[a.id].route == "file"]
        if by_file and files is not None:
            self.file_ids.update(
                await self.inputs.store.file_ids(self.user_id, files.key, [a.id for a in by_file])
            )
            missing = [a for a in by_file if a.id not in self.file_ids]
            if missing:
                await self._upload_all(missing)
        inline = [a for a, _ in fresh if self.plans[a.id].route in ("image", "data", "text")]
        if inline:
            await self._budget(inline)

    async def _budget(self, inline: Sequence[Attachment]) -> None:
        """Keep the newest inline attachments within the budget; note the rest."""
        sizes = await self.inputs.store.rendition_sizes(self.user_id, [a.id for a in inline])
        remaining = self.inputs.inline_budget - self.inline_bytes
        for attachment in inline:
            plan = self.plans[attachment.id]
            known = sizes.get(attachment.id)
            if known is None:
                rendition = await self._make_rendition(attachment)
                if rendition is None:
                    continue  # unreadable now: `part` says so
                known = (rendition.mime_type, rendition.size)
            mime_type, size = known
            cost = size if plan.route == "text" else data_url_size(mime_type, size)
            plan.send = plan.new or cost <= remaining
            if plan.send:
                remaining -= cost
                self.inline_bytes += cost

    async def _make_rendition(self, attachment: Attachment) -> Rendition | None:
        """Made once per attachment, from the original: the scaled image, or the original's
        type and size (`data` None)."""
        data = await self._read(attachment)
        if data is None:
            return None
        mime_type = attachment.mime_type.lower()
        rendition = Rendition(mime_type, len(data), None)
        if mime_type in MODEL_IMAGE_TYPES:
            scaled = await asyncio.to_thread(image_rendition, data)
            if scaled is not None:
                rendition = Rendition(scaled[0], len(scaled[1]), scaled[1])
        await self.inputs.store.save_rendition(self.user_id, attachment.id, rendition)
        return rendition

    async def _read(self, attachment: Attachment) -> bytes | None:
        try:
            return await self.inputs.attachments.read_content(attachment.id, self.user_id)
        except FileStorageError:
            logger.warning(
                "Could not read attachment %s for the model", attachment.id, exc_info=True
            )
            return None

    async def part(self, attachment: Attachment, new: bool = True) -> ResponseInputContentParam:
        """The content part for one of the caller's attachments."""
        if attachment.id not in self.plans:
            await self._plan([(attachment, new)])
        plan = self.plans[attachment.id]
        mime_type = attachment.mime_type.lower()
        match plan.route:
            case "file":
                return self._by_file_id(attachment)
            case "image" | "data" | "text":
                return await self._inline(attachment, plan)
            case "refuse":
                if plan.new:
                    raise CustomStreamError(
                        f"This assistant's model is reached through the Chat Completions API, "
                        f"which cannot read {attachment.name!r} ({mime_type}): it takes images "
                        "and text files only. Paste the text you need instead.",
                        allow_retry=False,
                    )
                return _note(
                    f"[The user attached {attachment.name!r} ({mime_type}), unreadable here.]"
                )
            case "unreadable":
                return _note(
                    f"[The user attached {attachment.name!r} ({mime_type}), a format you "
                    "cannot read.]"
                )

    async def _upload_all(self, attachments: Sequence[Attachment]) -> None:
        """Upload attachments new to the provider, `UPLOADS_AT_ONCE` at a time. One that fails
        fails the turn if it came with the new message; an older one becomes a note."""
        limit = asyncio.Semaphore(UPLOADS_AT_ONCE)

        async def upload(attachment: Attachment) -> None:
            async with limit:
                try:
                    file_id = await self._upload(attachment)
                except openai.APIError:
                    if self.plans[attachment.id].new:
                        raise
                    logger.warning("Could not upload attachment %s", attachment.id, exc_info=True)
                    self.refused.add(attachment.id)
                    return
            if file_id is not None:
                self.file_ids[attachment.id] = file_id

        try:
            async with asyncio.TaskGroup() as group:
                for attachment in attachments:
                    group.create_task(upload(attachment))
        except BaseExceptionGroup as errors:
            raise errors.exceptions[0] from None  # the provider's error, as a turn expects

    def _by_file_id(self, attachment: Attachment) -> ResponseInputContentParam:
        file_id = self.file_ids.get(attachment.id)
        if attachment.id in self.refused:
            return _note(f"[The provider refused the file {attachment.name!r}: you cannot see it.]")
        if file_id is None:
            return _unavailable(attachment)
        self.refs[file_id] = attachment
        if attachment.mime_type.lower() in MODEL_IMAGE_TYPES:
            return ResponseInputImageParam(type="input_image", detail="auto", file_id=file_id)
        return ResponseInputFileParam(type="input_file", file_id=file_id, filename=attachment.name)

    async def _upload(self, attachment: Attachment) -> str | None:
        """Upload the attachment (an image at the model's resolution) and keep its file id."""
        files = self.inputs.files
        assert files is not None
        data = await self._read(attachment)
        if data is None:
            return None
        mime_type, name = attachment.mime_type.lower(), attachment.name
        if mime_type in MODEL_IMAGE_TYPES:
            scaled = await asyncio.to_thread(image_rendition, data)
            if scaled is not None:
                mime_type, data = scaled
        file_id = await files.upload(name, mime_type, data)
        del data
        logger.info("Uploaded attachment %s to the model provider as %s", attachment.id, file_id)
        await self.inputs.store.save_file_id(self.user_id, files.key, attachment.id, file_id)
        return file_id

    async def _inline(self, attachment: Attachment, plan: Plan) -> ResponseInputContentParam:
        mime_type = attachment.mime_type.lower()
        if not plan.send:
            return _note(
                f"[Earlier in this conversation the user attached {attachment.name!r} "
                f"({mime_type}), and you saw it then; it is left out of this request to keep "
                "it small.]"
            )
        key = (self.user_id, attachment.id)
        encoded = self.inputs.cache.get(key)
        if encoded is None:
            encoded = await self._encode(attachment, plan.route)
            if encoded is None:
                return _unavailable(attachment)
            self.inputs.cache.put(key, encoded)
        if plan.route == "image":
            return ResponseInputImageParam(type="input_image", detail="auto", image_url=encoded)
        if plan.route == "text":
            return _note(f"[The user attached {attachment.name!r} ({mime_type}):]\n{encoded}")
        return ResponseInputFileParam(
            type="input_file", file_data=encoded, filename=attachment.name
        )

    async def _encode(self, attachment: Attachment, how: Route) -> str | None:
        rendition = await self.inputs.store.rendition(self.user_id, attachment.id)
        if rendition is not None and rendition.data is not None:
            mime_type, data = rendition.mime_type, rendition.data
        else:
            read = await self._read(attachment)
            if read is None:
                return None
            mime_type, data = attachment.mime_type.lower(), read
        if how == "text":
            return data.decode("utf-8", errors="replace")
        return data_url(mime_type, data)

    # stale file ids

    def rewrite(self, value: Any) -> Any:
        """`value` (model input) with every replaced file id swapped for its new one."""
        if not self.replaced:
            return value
        if isinstance(value, list):
            return [self.rewrite(item) for item in value]
        if isinstance(value, dict):
            return {
                key: self.replaced.get(item, item) if key == "file_id" else self.rewrite(item)
                for key, item in value.items()
            }
        return value

    async def refresh(self, model_input: Any, error: openai.APIStatusError) -> Any | None:
        """After the provider refused a request: re-upload the file ids it no longer knows
        (each once per turn) and return the input to retry with; `None` if none was stale.

        The error names the file id; if it does not, each file id is checked (error path only).
        """
        if error.status_code not in (400, 404) or self.inputs.files is None:
            return None
        said = f"{error.message} {error.body}"
        pending = [file_id for file_id in self.refs if file_id not in self.replaced]
        stale = [file_id for file_id in pending if file_id in said]
        if not stale and "file" in said.lower():
            stale = [file_id for file_id in pending if not await self._exists(file_id)]
        if not stale:
            return None
        for file_id in stale:
            attachment = self.refs[file_id]
            logger.info("Provider forgot file %s of attachment %s", file_id, attachment.id)
            new_id = await self._upload(attachment)
            if new_id is None:
                return None
            self.replaced[file_id] = new_id
            self.refs[new_id] = attachment
            self.file_ids[attachment.id] = new_id
        return self.rewrite(model_input)

    async def _exists(self, file_id: str) -> bool:
        assert self.inputs.files is not None
        try:
            await self.inputs.files.client.files.retrieve(file_id)
        except openai.NotFoundError:
            return False
        return True


def _note(text: str) -> ResponseInputTextParam:
    return ResponseInputTextParam(type="input_text", text=text)


def _unavailable(attachment: Attachment) -> ResponseInputTextParam:
    return _note(f"[Attachment {attachment.name!r} is not available.]")
