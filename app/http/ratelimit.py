"""Per-user limits on `/chatkit`: requests per minute, daily messages by tier, concurrent streams.

Request and message counts live in the database (`usage_counters`), so every server process
shares them. Concurrent streams are counted in this process only: a stream's slot must be freed
even when the process dies, which an in-memory counter gets for free. With N processes a user may
hold up to N x `MAX_CONCURRENT_STREAMS_PER_USER` streams.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.context import RequestContext
from app.errors import AppError
from app.http.asgi import is_guarded, is_protocol_request, read_body, replay
from app.http.errors import refuse
from app.store.db import utcnow
from app.store.errors import is_outage
from app.store.quotas import duration, seconds_until
from app.store.usage import UsageCounters, Window

logger = logging.getLogger(__name__)

MESSAGE_REQUEST_TYPES = frozenset(
    {
        "threads.create",
        "threads.add_user_message",
        "threads.add_client_tool_output",
        "threads.add_structured_input",
        "threads.retry_after_item",
        "threads.custom_action",
    }
)
"""Requests that start a model turn: each one counts against the daily message quota."""

STREAMING_REQUEST_TYPES = MESSAGE_REQUEST_TYPES
"""The SDK streams exactly these (`chatkit.types.is_streaming_req`)."""

STREAM_RETRY_AFTER_SECONDS = 5
REQUESTS, MESSAGES, DOWNLOADS = "requests", "messages", "downloads"


class Refusal(AppError):
    """Why a request is over a limit, in words a person understands, and when to try again."""

    status = 429

    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.code = code
        self.retry_after = retry_after


class StreamSlots:
    """Open streams per user in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}

    def acquire(self, user_id: str) -> bool:
        if self.limit and self.open.get(user_id, 0) >= self.limit:
            return False
        self.open[user_id] = self.open.get(user_id, 0) + 1
        return True

    def release(self, user_id: str) -> None:
        left = self.open.get(user_id, 0) - 1
        if left > 0:
            self.open[user_id] = left
        else:
            self.open.pop(user_id, None)


class RateLimiter:
    """Counts a request against the caller's limits and says whether it may go on."""

    def __init__(
        self, settings: Settings, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.streams = StreamSlots(settings.max_concurrent_streams_per_user)
        self.counters = UsageCounters(engine)

    async def check(self, context: RequestContext, request_type: str | None) -> Refusal | None:
        now = self.clock()
        windows: list[Window] = []
        per_minute = self.settings.rate_limit_requests_per_minute
        if per_minute:
            windows.append(Window(REQUESTS, now.replace(second=0, microsecond=0), per_minute))
        quota = self.settings.daily_message_limit(context.tier)
        if request_type in MESSAGE_REQUEST_TYPES and quota is not None:
            day = now.replace(hour=0, minute=0, second=0, microsecond=0)
            windows.append(Window(MESSAGES, day, quota))
        over = await self._hit(context.user_id, windows)
        if over is None:
            return None
        if over.bucket == REQUESTS:
            return _per_minute_refusal(now, over, "requests")
        wait = seconds_until(now, over.start + timedelta(days=1))
        return Refusal(
            "quota_exceeded",
            f"You have used all {over.limit} messages for today on the {context.tier} plan. "
            f"The quota resets at 00:00 UTC, in {duration(wait)}.",
            wait,
        )

    async def check_download(self, owner: str) -> Refusal | None:
        """Attachment downloads, counted against the file's owner, whoever holds the link.

        A bucket of their own with the per-minute limit, so that opening a thread full of
        images does not use up the requests a conversation needs.
        """
        per_minute = self.settings.rate_limit_requests_per_minute
        if not per_minute:
            return None
        now = self.clock()
        window = Window(DOWNLOADS, now.replace(second=0, microsecond=0), per_minute)
        over = await self._hit(owner, [window])
        return None if over is None else _per_minute_refusal(now, over, "downloads")

    async def _hit(self, user_id: str, windows: list[Window]) -> Window | None:
        """The first window now over its limit; none when the database is down (the request
        then fails on its own, with a 503 or a retryable error event)."""
        if not windows:
            return None
        try:
            over = await self.counters.hit(user_id, windows)
        except Exception as exc:
            if not is_outage(exc):
                raise
            logger.warning("Rate limit check skipped, the database is down: %s", type(exc).__name__)
            return None
        return None if over is None else over[0]


def _per_minute_refusal(now: datetime, window: Window, what: str) -> Refusal:
    wait = seconds_until(now, window.start + timedelta(minutes=1))
    return Refusal(
        "rate_limited",
        f"Too many {what}: the limit is {window.limit} per minute. Try again in {wait} seconds.",
        wait,
    )


@dataclass(frozen=True, slots=True)
class RateLimitMiddleware:
    """Refuses over-limit `/chatkit` requests with a 429 and `Retry-After` before they run."""

    app: ASGIApp
    limiter: RateLimiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        context: RequestContext | None = scope.get("state", {}).get("context")
        if context is None or not is_guarded(scope):
            await self.app(scope, receive, send)
            return
        request_type = None
        if is_protocol_request(scope):
            body = await read_body(receive)
            receive = replay(body, receive)
            request_type = _request_type(body)
        streaming = request_type in STREAMING_REQUEST_TYPES
        if streaming and not self.limiter.streams.acquire(context.user_id):
            # Checked first, so that a refused stream does not use up a message.
            await refuse(self._too_many_streams(), scope, receive, send)
            return
        try:
            refusal = await self.limiter.check(context, request_type)
            if refusal is not None:
                await refuse(refusal, scope, receive, send)
                return
            await self.app(scope, receive, send)
        finally:
            if streaming:
                self.limiter.streams.release(context.user_id)

    def _too_many_streams(self) -> Refusal:
        return Refusal(
            "too_many_streams",
            f"You already have {self.limiter.streams.limit} replies in progress. "
            "Wait for one to finish, then try again.",
            STREAM_RETRY_AFTER_SECONDS,
        )


def _request_type(body: bytes) -> str | None:
    """The ChatKit request's `type`; anything unparsable is left for the route to refuse."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # deeply nested bodies too: the route refuses them
        return None
    kind = parsed.get("type") if isinstance(parsed, dict) else None
    return kind if isinstance(kind, str) else None
