"""A turn's token usage, written as its one usage row (`token_usage`).

Both places that stream a run use it: a turn (`ChatKitBackend._answer`) and a run resumed after
an approval (`ApprovalFlow.resume`), so that every model call is counted against the quotas.
"""

from __future__ import annotations

import logging

import anyio
from agents import RunResultStreaming
from sqlalchemy.exc import SQLAlchemyError

from app.agent.model import model_name
from app.agent.title import Title
from app.store.db import utcnow
from app.store.errors import is_outage
from app.store.tokens import TokenCounts, TokenUsageStore

logger = logging.getLogger(__name__)


class UsageRecorder:
    """Writes what a run (and its title call) used: one INSERT, under the reply model."""

    def __init__(self, tokens: TokenUsageStore) -> None:
        self.tokens = tokens

    async def record(
        self,
        user_id: str,
        thread_id: str,
        item_id: str | None,
        result: RunResultStreaming | None,
        title: Title | None = None,
    ) -> None:
        """Shielded (a disconnect cancels the turn, and the tokens were spent all the same); a
        failed write is logged, never the turn's failure: the answer has been given."""
        counts = TokenCounts()
        if result is not None:
            counts += TokenCounts.from_usage(result.context_wrapper.usage)
        if title is not None:
            counts += TokenCounts.from_usage(title.usage)
        if counts == TokenCounts():
            return
        agent = result.last_agent if result is not None else None
        model = model_name(agent.model if agent is not None else None)
        with anyio.CancelScope(shield=True):
            try:
                await self.tokens.record(user_id, thread_id, item_id, model, counts, utcnow())
            except (SQLAlchemyError, OSError) as exc:
                logger.warning(
                    "Token usage of a turn in thread %s not recorded: %s",
                    thread_id,
                    type(exc).__name__,
                    exc_info=None if is_outage(exc) else exc,
                )
