"""Token quotas per tier (`TOKEN_QUOTA_DAILY`, `TOKEN_QUOTA_MONTHLY`) and the usage report.

A turn is refused before the model is called when the caller has already spent their day's or
month's tokens; the turn that crosses the line finishes (its cost is only known at its end).
Days and months are UTC. Costs come from `USAGE_PRICES`, per million tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.config import ModelPrice, Settings
from app.context import RequestContext
from app.errors import AppError
from app.store.db import utcnow
from app.store.tokens import ModelUsage, TokenCounts, TokenUsageStore

MILLION = 1_000_000


class TokenQuotaExceeded(AppError):
    """The caller's token quota is spent: a 429, or an error event in a stream."""

    status, code = 429, "token_quota_exceeded"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Periods:
    """The UTC day and month `now` falls in: their starts and the next ones."""

    day: datetime
    next_day: datetime
    month: datetime
    next_month: datetime

    @classmethod
    def at(cls, now: datetime) -> Periods:
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        month = day.replace(day=1)
        next_month = (month + timedelta(days=32)).replace(day=1)
        return cls(day, day + timedelta(days=1), month, next_month)


def cost(prices: dict[str, ModelPrice], model: str, tokens: TokenCounts) -> float | None:
    """What `tokens` of `model` cost by the price table; None when the table has no price."""
    price = prices.get(model)
    if price is None:
        return None
    uncached = max(0, tokens.input - tokens.cached_input)
    return (
        uncached * price.input
        + tokens.cached_input * price.cached_input
        + tokens.output * price.output
    ) / MILLION


class TokenQuota:
    """Checks a caller's quota with one indexed query, and reports their usage."""

    def __init__(
        self,
        settings: Settings,
        tokens: TokenUsageStore,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.clock = clock

    async def check(self, context: RequestContext) -> TokenQuotaExceeded | None:
        """The refusal if the caller's day or month is spent; no query when no quota applies."""
        daily, monthly = self.settings.token_quotas(context.tier)
        if daily is None and monthly is None:
            return None
        now = self.clock()
        periods = Periods.at(now)
        spent = await self.tokens.spent(context.user_id, periods.day, periods.month)
        if monthly is not None and spent.this_month >= monthly:
            wait = seconds_until(now, periods.next_month)
            return TokenQuotaExceeded(
                f"You have used all {monthly:,} tokens of this month on the {context.tier} "
                f"plan. The quota resets on {periods.next_month:%B} 1 at 00:00 UTC.",
                wait,
            )
        if daily is not None and spent.today >= daily:
            wait = seconds_until(now, periods.next_day)
            return TokenQuotaExceeded(
                f"You have used all {daily:,} tokens of today on the {context.tier} plan. "
                f"The quota resets at 00:00 UTC, in {duration(wait)}.",
                wait,
            )
        return None

    async def report(self, context: RequestContext) -> dict[str, Any]:
        """The caller's usage today and this month, by model, with cost and remaining quota."""
        now = self.clock()
        periods = Periods.at(now)
        today = await self.tokens.by_model(context.user_id, periods.day)
        month = await self.tokens.by_model(context.user_id, periods.month)
        daily, monthly = self.settings.token_quotas(context.tier)
        return {
            "user_id": context.user_id,
            "tier": context.tier,
            "today": self._period(periods.day, today),
            "this_month": self._period(periods.month, month),
            "quota": {
                "daily": _quota(daily, _total(today), periods.next_day),
                "monthly": _quota(monthly, _total(month), periods.next_month),
            },
        }

    def _period(self, since: datetime, models: Sequence[ModelUsage]) -> dict[str, Any]:
        return period_report(self.settings.usage_prices, since, models)


def period_report(
    prices: dict[str, ModelPrice], since: datetime, models: Sequence[ModelUsage]
) -> dict[str, Any]:
    """Totals and per-model rows of one period; costs only when a price table is set."""
    total = sum((m.tokens for m in models), TokenCounts())
    rows = []
    known: list[float] = []
    for usage in models:
        row: dict[str, Any] = {"model": usage.model, "turns": usage.turns, **usage.tokens.as_dict()}
        if prices:
            row["cost"] = cost(prices, usage.model, usage.tokens)
            if row["cost"] is not None:
                known.append(row["cost"])
        rows.append(row)
    report: dict[str, Any] = {
        "since": since.isoformat() + "Z",
        "turns": sum(m.turns for m in models),
        **total.as_dict(),
        "by_model": rows,
    }
    if prices:
        report["cost"] = sum(known)
        report["unpriced_models"] = [r["model"] for r in rows if r["cost"] is None]
    return report


def _total(models: Sequence[ModelUsage]) -> int:
    return sum(m.tokens.total for m in models)


def _quota(limit: int | None, used: int, resets: datetime) -> dict[str, Any]:
    return {
        "limit": limit,
        "used": used,
        "remaining": None if limit is None else max(0, limit - used),
        "resets_at": resets.isoformat() + "Z",
    }


def seconds_until(now: datetime, end: datetime) -> int:
    """Whole seconds from `now` to `end`, at least one (a `Retry-After`)."""
    return max(1, math.ceil((end - now).total_seconds()))


def duration(seconds: int) -> str:
    """`2 hours 5 minutes`, `1 minute`: a wait, in words."""
    hours, rest = divmod(seconds, 3600)
    minutes = max(1, math.ceil(rest / 60)) if hours == 0 else rest // 60
    if hours == 0:
        return f"{minutes} minute{'s' * (minutes != 1)}"
    return f"{hours} hour{'s' * (hours != 1)} {minutes} minute{'s' * (minutes != 1)}"
