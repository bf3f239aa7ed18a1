"""Metrics and traces, installed on the app by `create_app` as the settings and `OTEL_*` ask.

With neither METRICS_ENABLED nor tracing, nothing is installed and the Agents SDK's tracing
stays off, as it always is otherwise.
"""

from __future__ import annotations

from agents import set_trace_processors
from agents.tracing import TracingProcessor
from fastapi import FastAPI
from starlette.routing import Route

from app.observability.agent_metrics import ToolMetrics, count_connections
from app.observability.metrics_http import MetricsEndpoint, RequestMetricsMiddleware
from app.observability.tracing import RootSpanMiddleware
from app.services import Services

METRICS_PATH = "/metrics"


def observe(app: FastAPI, services: Services) -> None:
    """Call after the edge middleware is added and before the request id's: these middleware
    then see the edge's refusals, and log lines and spans have the request id."""
    settings, tracing = services.settings, services.tracing
    processors: list[TracingProcessor] = []
    if settings.metrics_enabled:
        app.add_middleware(RequestMetricsMiddleware)
        endpoint = MetricsEndpoint.build(settings.metrics_token)
        app.router.routes.append(
            Route(METRICS_PATH, endpoint, methods=["GET"], include_in_schema=False)
        )
        count_connections(services.engine)
        processors.append(ToolMetrics())
    if tracing is not None:
        app.add_middleware(RootSpanMiddleware, user_ids=tracing.user_ids)
    if not processors and tracing is None:
        return
    # In place of the SDK's default processor, which exports to OpenAI; OpenInference's (in
    # `Tracing.start`) is added beside these.
    set_trace_processors(processors)
    services.assistant.trace_runs()
    if tracing is not None:
        tracing.instrument_app(app)  # the rest when it starts serving (`Services.lifespan`)
