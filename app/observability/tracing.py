"""OpenTelemetry traces, configured by the standard `OTEL_*` environment variables only.

With none of them set, `Tracing.from_environment` returns `None`: no tracer provider, no
instrumentation, nothing recorded. Otherwise one provider exports over OTLP/HTTP (the exporter
reads `OTEL_EXPORTER_OTLP_*` itself; `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and
`OTEL_TRACES_SAMPLER` are read by the SDK) and these are instrumented:
- HTTP requests (FastAPI's instrumentation: the root span of a request);
- SQL statements (SQLAlchemy, on the async engine's `sync_engine`);
- outgoing HTTP (httpx, and httpx2 under the OpenAI client: the model calls);
- the agent run (OpenInference's Agents SDK instrumentation: agent, model and tool spans).
  Inputs and outputs are hidden, and the SDK's own export to OpenAI stays off. Only a sampled
  request's run is traced by the SDK (`Assistant.trace_runs`).
The root span carries the request id and the user id, hashed unless `TRACE_USER_ID=raw`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Mapping
from contextvars import Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import trace
from opentelemetry.context import (
    _SUPPRESS_INSTRUMENTATION_KEY,
    Context,
    attach,
    detach,
    get_value,
    set_value,
)
from opentelemetry.trace import get_current_span
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import ConfigurationError
from app.context import RequestContext
from app.logging import request_id_var
from app.store.db import trace_driver_statements

if TYPE_CHECKING:  # imported when tracing is on, not before: unset costs nothing, imports included
    from fastapi import FastAPI
    from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
        BaseInstrumentor,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

EXPORTERS = ("otlp", "console", "none")
SIGNAL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
)
"""Any of these (non-empty) asks for traces."""
UNTRACED_URLS = "healthz,readyz,metrics"
DEFAULT_SERVICE_NAME = "chatkit-backend"
USER_HASH_CHARS = 16

UserIdMode = Literal["hashed", "raw"]


def tracing_requested(environ: Mapping[str, str]) -> bool:
    """Whether the standard variables ask for traces (and `OTEL_SDK_DISABLED` does not forbid)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(environ.get(name, "").strip() for name in SIGNAL_VARIABLES)


def exporter_from_environment(environ: Mapping[str, str]) -> SpanExporter:
    """`OTEL_TRACES_EXPORTER` (`otlp`, the default, over HTTP/protobuf; or `console`)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    if len(names) != 1 or names[0] not in EXPORTERS[:2]:
        raise ConfigurationError(
            "Invalid configuration:\n  OTEL_TRACES_EXPORTER: expected otlp, console or none, "
            f"got {environ.get('OTEL_TRACES_EXPORTER')!r}"
        )
    if names[0] == "console":
        return ConsoleSpanExporter()
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(name, "").strip()
        if protocol and protocol != "http/protobuf":
            raise ConfigurationError(
                f"Invalid configuration:\n  {name}: this server exports over http/protobuf "
                f"only, got {protocol!r}"
            )
    return OTLPSpanExporter()


def without_spans() -> Token[Context]:
    """Record no spans in the current context from now on (until `detach(token)`): the
    instrumentations honour OpenTelemetry's standard suppression key. For a background loop,
    whose statements, every fraction of a second, would each be a trace of their own, and for
    a request that is not sampled."""
    return attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))


def sampled_here() -> bool:
    """Whether the current request's span is sampled; outside any request, yes, unless spans
    are suppressed (as `SamplingGate` does for a request it did not sample)."""
    if get_value(_SUPPRESS_INSTRUMENTATION_KEY):
        return False
    context = get_current_span().get_span_context()
    return not context.is_valid or context.trace_flags.sampled


def user_attribute(user_id: str, mode: UserIdMode) -> str:
    """The user as the root span names them: a SHA-256 prefix unless raw ids are opted in."""
    if mode == "raw":
        return user_id
    return hashlib.sha256(user_id.encode()).hexdigest()[:USER_HASH_CHARS]


@dataclass
class Tracing:
    """A tracer provider and the instrumentation that feeds it, installed once per app."""

    provider: TracerProvider
    user_ids: UserIdMode = "hashed"
    disabled: frozenset[str] = frozenset()
    """Instrumentations left out (`OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`, by entry point name:
    `fastapi`, `sqlalchemy`, `httpx`, `httpx2`, `openai_agents`)."""
    _installed: list[BaseInstrumentor] = field(default_factory=list)
    _app: FastAPI | None = None
    _engine: AsyncEngine | None = None

    @classmethod
    def from_environment(
        cls, user_ids: UserIdMode = "hashed", environ: Mapping[str, str] | None = None
    ) -> Tracing | None:
        environ = os.environ if environ is None else environ
        if not tracing_requested(environ):
            return None
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from app.observability.sampling import DecidedTraceIds

        exporter = exporter_from_environment(environ)
        resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE_NAME}))
        provider = TracerProvider(resource=resource, id_generator=DecidedTraceIds())
        provider.add_span_processor(BatchSpanProcessor(exporter))
        names = environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")
        return cls(provider, user_ids, frozenset(n.strip() for n in names if n.strip()))

    def instrument_app(self, app: FastAPI) -> None:
        """The app's requests (this app's only: `create_app` may build one that never serves)."""
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        from app.observability.sampling import gate_requests

        if "fastapi" in self.disabled:
            return
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            excluded_urls=UNTRACED_URLS,
            exclude_spans=["receive", "send"],  # a span per SSE chunk would cost more than it says
        )
        self._app = app
        gate_requests(app, self.provider)

    def start(self, engine: AsyncEngine) -> None:
        """Instrument the engine, the HTTP clients and the Agents SDK, process-wide, while the
        app serves (`Services.lifespan`): uvicorn builds the app twice and serves the second."""
        from openinference.instrumentation import TraceConfig
        from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor
        from opentelemetry.instrumentation.httpx import (
            HTTPX2ClientInstrumentor,
            HTTPXClientInstrumentor,
        )
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        options: dict[str, Any] = {"tracer_provider": self.provider}
        instrumentations: list[tuple[str, BaseInstrumentor, dict[str, Any]]] = [
            # Its declared range stops below SQLAlchemy 2.1, whose engine events it uses
            # unchanged (tests/observability/test_tracing.py sees the statements).
            (
                "sqlalchemy",
                SQLAlchemyInstrumentor(),
                {"engine": engine.sync_engine, "skip_dep_check": True},
            ),
            ("httpx", HTTPXClientInstrumentor(), {}),
            ("httpx2", HTTPX2ClientInstrumentor(), {}),
            (
                "openai_agents",
                OpenAIAgentsInstrumentor(),
                {
                    "exclusive_processor": False,  # the SDK's list is emptied by `observe`
                    "config": TraceConfig(hide_inputs=True, hide_outputs=True),
                },
            ),
        ]
        dispatch = engine.sync_engine.dispatch  # its collections are replaced as they fill
        listeners_before = len(dispatch.before_cursor_execute)
        for name, instrumentor, extra in instrumentations:
            if name in self.disabled:
                continue
            if instrumentor.is_instrumented_by_opentelemetry:
                logger.warning("%s was already instrumented", type(instrumentor).__name__)
                continue
            instrumentor.instrument(**options, **extra)
            self._installed.append(instrumentor)
        if any(isinstance(i, SQLAlchemyInstrumentor) for i in self._installed):
            # No span per pool checkout ("connect"): a turn makes eight, a third of its spans,
            # for microseconds each; the pool's use is a metric (`chatkit_db_connections_in_use`).
            from opentelemetry.instrumentation.utils import unwrap
            from sqlalchemy.engine import Engine

            from app.observability.statement_spans import trace_statements_on_driver

            unwrap(Engine, "connect")
            added = len(dispatch.before_cursor_execute) - listeners_before
            trace_statements_on_driver(engine, self.provider, added)
            self._engine = engine

    async def shutdown(self) -> None:
        """Remove the instrumentation, then export what is left (in a thread: the exporter's
        requests may block for their timeout)."""
        for instrumentor in reversed(self._installed):
            instrumentor.uninstrument()
        self._installed.clear()
        if self._engine is not None:
            trace_driver_statements(self._engine, None)
            self._engine = None
        if self._app is not None:
            from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

            FastAPIInstrumentor.uninstrument_app(self._app)
            self._app = None
        await asyncio.to_thread(self.provider.shutdown)


@dataclass(frozen=True, slots=True)
class RootSpanMiddleware:
    """Names the request and its user on the request's span, once the edge knows the user.

    Set when the response starts: identity is resolved by then (or the request was refused).
    A request whose span is not recorded runs with instrumentation suppressed (its turn's task
    too, which starts in its context): its statements' and model calls' spans would be dropped
    with their parent, but only after the instrumentations had done their work. (With the
    SDK's samplers `SamplingGate` has suppressed it already, before any span.)
    """

    app: ASGIApp
    user_ids: UserIdMode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        span = trace.get_current_span()
        if not span.is_recording():
            # Not sampled: suppressed from here (the gate has already done it, and without
            # FastAPI's instrumentation there is no request span and nothing to suppress).
            token = without_spans() if span.get_span_context().is_valid else None
            try:
                await self.app(scope, receive, send)
            finally:
                if token is not None:
                    detach(token)
            return

        async def send_naming(message: Message) -> None:
            if message["type"] == "http.response.start" and span.is_recording():
                if (request_id := request_id_var.get()) is not None:
                    span.set_attribute("chatkit.request_id", request_id)
                context: RequestContext | None = scope.get("state", {}).get("context")
                if context is not None:
                    span.set_attribute("enduser.id", user_attribute(context.user_id, self.user_ids))
            await send(message)

        await self.app(scope, receive, send_naming)
