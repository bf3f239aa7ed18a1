"""The Prometheus metrics: their names, labels and buckets, in one place (docs/operations.md).

Defined once per process, as `prometheus_client` intends: with `PROMETHEUS_MULTIPROC_DIR` set
(several uvicorn workers) each process writes its values to files there and `/metrics` adds
them up (`app/observability/metrics_http.py`). Labels are bounded: request types the protocol
knows (anything else is `other`), statuses, models and tools from the configuration, error kinds
from a fixed list. Never a user, thread or request id.
"""

from __future__ import annotations

from typing import Final, get_args

from chatkit.types import ChatKitReq
from prometheus_client import Counter, Gauge, Histogram


def _protocol_request_types() -> frozenset[str]:
    """Every ChatKit request `type` (from the SDK's discriminated union)."""
    (union, *_) = get_args(ChatKitReq)
    return frozenset(
        value for req in get_args(union) for value in get_args(req.model_fields["type"].annotation)
    )


REQUEST_TYPES: Final = _protocol_request_types()
OTHER: Final = "other"
"""The label of anything outside a bounded set: an unknown request type, an unexpected error."""

TURN_SECONDS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
FIRST_EVENT_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30)

REQUESTS = Counter(
    "chatkit_requests",
    "POST /chatkit requests by ChatKit request type and HTTP status.",
    ["request_type", "status"],
)
TIME_TO_FIRST_EVENT = Histogram(
    "chatkit_time_to_first_event_seconds",
    "Streaming requests: seconds from the request's arrival to the first SSE event sent.",
    ["request_type"],
    buckets=FIRST_EVENT_SECONDS,
)
TURN_DURATION = Histogram(
    "chatkit_turn_duration_seconds",
    "Streaming requests: seconds from the request's arrival to the end of its stream.",
    ["request_type"],
    buckets=TURN_SECONDS,
)
OPEN_STREAMS = Gauge(
    "chatkit_open_streams",
    "SSE responses being streamed now.",
    multiprocess_mode="livesum",
)
RATE_LIMIT_REFUSALS = Counter(
    "chatkit_rate_limit_refusals",
    "Requests refused with a 429, by ChatKit request type and reason (the error code).",
    ["request_type", "reason"],
)
MODEL_CALL_DURATION = Histogram(
    "chatkit_model_call_duration_seconds",
    "Seconds per model call, to the end of its streamed answer (failed calls included).",
    ["model"],
    buckets=TURN_SECONDS,
)
MODEL_ERRORS = Counter(
    "chatkit_model_errors",
    "Failed model calls by model and kind of error.",
    ["model", "kind"],
)
MODEL_TOKENS = Counter(
    "chatkit_model_tokens",
    "Tokens the model provider reported, by model and kind (input, cached_input, output, "
    "reasoning).",
    ["model", "kind"],
)
TOOL_CALLS = Counter(
    "chatkit_tool_calls",
    "Tool calls the agent made, by tool and outcome (ok or error).",
    ["tool", "outcome"],
)
DB_CONNECTIONS_IN_USE = Gauge(
    "chatkit_db_connections_in_use",
    "Database connections checked out of the pool now.",
    multiprocess_mode="livesum",
)

REFUSAL_REASONS: Final = frozenset(
    {"rate_limited", "quota_exceeded", "too_many_streams", "token_quota_exceeded"}
)
"""The 429 error codes: the edge's (`app/http/ratelimit.py`) and the token quota's
(`app/store/quotas.py`, a request that does not stream); others are `other`."""


def request_type_label(value: str | None) -> str:
    """A request type the protocol knows, else `other`: a client cannot grow the label set."""
    return value if value in REQUEST_TYPES else OTHER


def refusal_reason_label(value: object) -> str:
    return value if isinstance(value, str) and value in REFUSAL_REASONS else OTHER
