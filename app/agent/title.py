"""Thread titles: a short model-written title, or the first words of the user's message."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from agents import ItemHelpers, Model, ModelSettings, Usage
from agents.models.interface import ModelTracing
from chatkit.types import ThreadItem, UserMessageItem, UserMessageTextContent

logger = logging.getLogger(__name__)

TITLE_WORDS = 6
TITLE_CHARS = 60
TITLE_TIMEOUT_SECONDS = 10.0
"""The answer is already shown; a slow title must not hold the stream open for long."""
TITLE_INSTRUCTIONS = (
    "Write a title of at most six words for a conversation that starts with the user's "
    "message below, in the language of that message. Reply with the title only: no quotes, no "
    "final period."
)


def fallback_title(text: str) -> str:
    """The first words of the message, shortened to fit a sidebar."""
    words = text.split()
    title = " ".join(words[:TITLE_WORDS])
    if len(title) > TITLE_CHARS:
        title = title[: TITLE_CHARS - 1].rstrip() + "…"
    elif len(words) > TITLE_WORDS:
        title += "…"
    return title or "New conversation"


def clean_title(raw: str) -> str:
    title = " ".join(raw.split()).strip(" \"'`.")
    return title[:TITLE_CHARS]


@dataclass(frozen=True, slots=True)
class Title:
    """A thread's title, and the tokens its model call used (none for a fallback title)."""

    text: str
    usage: Usage = field(default_factory=Usage)


async def write_title(model: Model | None, text: str) -> Title:
    """Ask `model` for a title; any failure (or no model) falls back to the message's words.

    One request, not streamed, straight to the model: an agent run around it (no tools, no
    handoffs, one turn) would only add CPU to every new thread.
    """
    if model is None or not text.strip():
        return Title(fallback_title(text))
    try:
        async with asyncio.timeout(TITLE_TIMEOUT_SECONDS):
            response = await model.get_response(
                TITLE_INSTRUCTIONS,
                text[:2000],
                ModelSettings(),
                tools=[],
                output_schema=None,
                handoffs=[],
                tracing=ModelTracing.DISABLED,
                previous_response_id=None,
                conversation_id=None,
                prompt=None,
            )
        title = clean_title(
            "".join(ItemHelpers.extract_last_text(i) or "" for i in response.output)
        )
    except Exception as exc:  # a title is decoration: never fail the turn for it
        logger.warning("Title generation failed (%s); using the first words", type(exc).__name__)
        return Title(fallback_title(text))
    return Title(title or fallback_title(text), response.usage)


def first_user_text(items: list[ThreadItem]) -> str:
    """The text of the oldest user message among `items`: what a title summarizes."""
    for item in items:
        if isinstance(item, UserMessageItem):
            text = " ".join(
                part.text for part in item.content if isinstance(part, UserMessageTextContent)
            )
            if text.strip():
                return text
    return ""
