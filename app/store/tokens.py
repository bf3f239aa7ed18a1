"""Token usage: one row per turn (`token_usage`), the sums quotas and reports read.

Every query is scoped by `user_id`, but the admin report, which sums every user's month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.db import autocommit, random_id
from app.store.models import TokenUsageRow

USAGE_ID_PREFIX = "use"


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """Tokens as the Agents SDK's `Usage` reports them; cached input is part of the input and
    reasoning part of the output, as the providers bill them."""

    input: int = 0
    cached_input: int = 0
    output: int = 0
    reasoning: int = 0

    @classmethod
    def from_usage(cls, usage: Any) -> TokenCounts:
        """From an `agents.Usage` (a run's `context_wrapper.usage`)."""
        input_details = getattr(usage, "input_tokens_details", None)
        output_details = getattr(usage, "output_tokens_details", None)
        return cls(
            input=usage.input_tokens or 0,
            cached_input=getattr(input_details, "cached_tokens", 0) or 0,
            output=usage.output_tokens or 0,
            reasoning=getattr(output_details, "reasoning_tokens", 0) or 0,
        )

    def __add__(self, other: TokenCounts) -> TokenCounts:
        return TokenCounts(
            self.input + other.input,
            self.cached_input + other.cached_input,
            self.output + other.output,
            self.reasoning + other.reasoning,
        )

    @property
    def total(self) -> int:
        """What the quotas count: input plus output tokens."""
        return self.input + self.output

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input,
            "cached_input_tokens": self.cached_input,
            "output_tokens": self.output,
            "reasoning_tokens": self.reasoning,
            "total_tokens": self.total,
        }


@dataclass(frozen=True, slots=True)
class Spent:
    """Tokens (input + output) a user spent since the start of the day and of the month."""

    today: int
    this_month: int


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """One model's share of a period: its turns and their tokens."""

    model: str
    turns: int
    tokens: TokenCounts


def _sums() -> list[ColumnElement[Any]]:
    row = TokenUsageRow
    return [
        func.count().label("turns"),
        func.coalesce(func.sum(row.input_tokens), 0).label("input"),
        func.coalesce(func.sum(row.cached_input_tokens), 0).label("cached_input"),
        func.coalesce(func.sum(row.output_tokens), 0).label("output"),
        func.coalesce(func.sum(row.reasoning_tokens), 0).label("reasoning"),
    ]


def _counts(row: Any) -> TokenCounts:
    return TokenCounts(int(row.input), int(row.cached_input), int(row.output), int(row.reasoning))


INSERT_USAGE = insert(TokenUsageRow)
"""Built once, run with a row of values: building a statement per turn costs more CPU than
sending it."""


class TokenUsageStore:
    """Writes a turn's row (one INSERT) and reads the sums over `ix_token_usage_user_created`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = autocommit(engine)  # single statements
        self._insert = self.engine.prepare(INSERT_USAGE)  # every column, as every row has

    async def record(
        self,
        user_id: str,
        thread_id: str,
        item_id: str | None,
        model: str,
        counts: TokenCounts,
        at: datetime,
    ) -> None:
        row = {
            "user_id": user_id,
            "id": random_id(USAGE_ID_PREFIX),
            "thread_id": thread_id,
            "item_id": item_id,
            "model": model,
            "input_tokens": counts.input,
            "cached_input_tokens": counts.cached_input,
            "output_tokens": counts.output,
            "reasoning_tokens": counts.reasoning,
            "created_at": at,
        }
        await self.engine.rowcount(self._insert, row)

    async def spent(self, user_id: str, day: datetime, month: datetime) -> Spent:
        """One query over the user's rows since `month` (which starts on or before `day`)."""
        row = TokenUsageRow
        tokens = row.input_tokens + row.output_tokens
        stmt = select(
            func.coalesce(func.sum(case((row.created_at >= day, tokens), else_=0)), 0),
            func.coalesce(func.sum(tokens), 0),
        ).where(row.user_id == user_id, row.created_at >= month)
        async with self.engine.connect() as conn:
            today, this_month = (await conn.execute(stmt)).one()
        return Spent(int(today), int(this_month))

    async def by_model(
        self, user_id: str, since: datetime, until: datetime | None = None
    ) -> list[ModelUsage]:
        """The user's usage since `since` (and before `until`), per model."""
        row = TokenUsageRow
        stmt = (
            select(row.model, *_sums())
            .where(row.user_id == user_id, row.created_at >= since)
            .group_by(row.model)
            .order_by(row.model)
        )
        if until is not None:
            stmt = stmt.where(row.created_at < until)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [ModelUsage(r.model, int(r.turns), _counts(r)) for r in rows]

    async def per_user(self, since: datetime, until: datetime) -> list[tuple[str, ModelUsage]]:
        """Every user's usage in a period, per model: for operators (`python -m app.admin`)."""
        row = TokenUsageRow
        stmt = (
            select(row.user_id, row.model, *_sums())
            .where(row.created_at >= since, row.created_at < until)
            .group_by(row.user_id, row.model)
            .order_by(row.user_id, row.model)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [(r.user_id, ModelUsage(r.model, int(r.turns), _counts(r))) for r in rows]
