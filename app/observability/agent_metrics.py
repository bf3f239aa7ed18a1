"""Metrics from inside a turn: model calls (latency, errors by kind, tokens by model), tool
calls by tool and outcome, and database connections in use.

- `MeteredModel` wraps the agent's models (`Assistant` does it when METRICS_ENABLED): it sees
  each call's exception, so it can say which kind of failure it was, and the usage the
  provider reports in the call's final event.
- `count_tool_call`, from the run's hooks as each tool call ends: a failure reaches the model
  as the call's output, so the failure functions mark it (`note_tool_failure`); the SDK's
  default one is seen through `noting_default_failures`. No Agents SDK tracing is needed.
- `count_connections` follows the pool's checkouts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import openai
from agents import Model, ModelResponse, RunContextWrapper, Tool, Usage
from agents.exceptions import ModelTimeoutError
from agents.run_config import ToolErrorFormatterArgs
from openai.types.responses import ResponseCompletedEvent, ResponseUsage
from openai.types.responses.response_stream_event import ResponseStreamEvent
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app.agent.context import note_tool_failure, tool_failed
from app.observability import metrics
from app.store.tokens import TokenCounts

MAX_LABEL_CHARS = 64


def model_label(model: Model) -> str:
    """The model's name (an OpenAI model or Azure deployment), `fake`, or its class's name."""
    name = getattr(model, "model", None)
    if isinstance(name, str) and name:
        return name[:MAX_LABEL_CHARS]
    return "fake" if type(model).__name__ == "FakeModel" else type(model).__name__


def error_kind(exc: BaseException) -> str:
    """A bounded name for why a model call failed (the cases of `app.agent.errors`)."""
    match exc:
        case openai.AuthenticationError() | openai.PermissionDeniedError():
            return "auth"
        case openai.RateLimitError():
            return "rate_limited"
        case openai.NotFoundError():
            return "not_found"
        case openai.APIStatusError() if exc.status_code >= 500:
            return "server_error"
        case openai.APIStatusError():
            return "refused"
        case openai.APITimeoutError() | ModelTimeoutError() | TimeoutError():
            return "timeout"
        case (
            openai.APIConnectionError()
            | httpx.TransportError()
            | httpx2.TransportError()
            | ConnectionError()
        ):
            return "connection"
        case _:
            return metrics.OTHER


def count_tokens(model: str, usage: Usage | ResponseUsage | None) -> None:
    """Tokens by kind, read as the usage rows read them (`TokenCounts.from_usage`)."""
    if usage is None:
        return
    counts = dataclasses.asdict(TokenCounts.from_usage(usage))
    for kind, count in counts.items():
        if count:
            metrics.MODEL_TOKENS.labels(model, kind).inc(count)


class MeteredModel(Model):
    """A model that reports each call's duration, failure and token usage; otherwise the same."""

    def __init__(self, model: Model) -> None:
        self.inner = model
        self.label = model_label(model)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # `model`, `_client` and the like, for readers

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        started = time.perf_counter()
        try:
            response = await self.inner.get_response(*args, **kwargs)
        except Exception as exc:
            metrics.MODEL_ERRORS.labels(self.label, error_kind(exc)).inc()
            raise
        finally:
            metrics.MODEL_CALL_DURATION.labels(self.label).observe(time.perf_counter() - started)
        count_tokens(self.label, response.usage)
        return response

    async def stream_response(
        self, *args: Any, **kwargs: Any
    ) -> AsyncIterator[ResponseStreamEvent]:
        started = time.perf_counter()
        try:
            async for stream_event in self.inner.stream_response(*args, **kwargs):
                if isinstance(stream_event, ResponseCompletedEvent):
                    count_tokens(self.label, stream_event.response.usage)
                yield stream_event
        except Exception as exc:
            metrics.MODEL_ERRORS.labels(self.label, error_kind(exc)).inc()
            raise
        finally:
            metrics.MODEL_CALL_DURATION.labels(self.label).observe(time.perf_counter() - started)

    async def close(self) -> None:
        await self.inner.close()

    async def _cleanup_on_run_end(self, owner: object) -> None:
        await self.inner._cleanup_on_run_end(owner)

    def get_retry_advice(self, request: Any) -> Any:
        return self.inner.get_retry_advice(request)


def count_tool_call(context: RunContextWrapper[Any], tool: Tool) -> None:
    """One ended tool call: its tool, and `error` if its failure function marked it."""
    outcome = "error" if tool_failed(context) else "ok"
    metrics.TOOL_CALLS.labels(getattr(tool, "name", "tool")[:MAX_LABEL_CHARS], outcome).inc()


def noting_default_failures(args: ToolErrorFormatterArgs[Any]) -> None:
    """`RunConfig.tool_error_formatter`: marks a tool failure that the SDK's default failure
    function answered (tools without one of their own); its message is kept (`None`)."""
    if args.kind == "tool_exception":
        note_tool_failure(args.run_context)


def count_connections(engine: AsyncEngine) -> None:
    """Keep `chatkit_db_connections_in_use` at the pool's checked-out connections.

    Pool events rather than a callback reading `pool.checkedout()` at scrape time: with several
    workers, the scrape is answered by one of them, and only counters and gauges written by each
    add up (`livesum`).
    """
    event.listen(engine.sync_engine, "checkout", _checked_out)
    event.listen(engine.sync_engine, "checkin", _checked_in)


def _checked_out(*_: object) -> None:
    metrics.DB_CONNECTIONS_IN_USE.inc()


def _checked_in(*_: object) -> None:
    metrics.DB_CONNECTIONS_IN_USE.dec()
