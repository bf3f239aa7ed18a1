"""Metrics and traces, installed on the app by `create_app` as the settings and `OTEL_*` ask.

With neither METRICS_ENABLED nor tracing, nothing is installed. The Agents SDK's tracing stays
off unless tracing is on, and then runs only for sampled requests.
"""

from __future__ import annotations

from agents import set_trace_processors
from fastapi import FastAPI
from starlette.routing import Route

from app.observability.agent_metrics import count_connections
from app.observability.metrics_http import MetricsEndpoint, RequestMetricsMiddleware
from app.observability.tracing import RootSpanMiddleware
from app.services import Services

METRICS_PATH = "/metrics"


def observe(app: FastAPI, services: Services) -> None:
    """Call after the edge middleware is added and before the request id's: these middleware
    then see the edge's refusals, and log lines and spans have the request id."""
    settings, tracing = services.settings, services.tracing
    if settings.metrics_enabled:  # the model and tool counts are the assistant's own
        app.add_middleware(RequestMetricsMiddleware)
        endpoint = MetricsEndpoint.build(settings.metrics_token)
        app.router.routes.append(
            Route(METRICS_PATH, endpoint, methods=["GET"], include_in_schema=False)
        )
        count_connections(services.engine)
    if tracing is None:
        return
    app.add_middleware(RootSpanMiddleware, user_ids=tracing.user_ids)
    # No export to OpenAI: OpenInference's processor (added in `Tracing.start`) is the only one.
    set_trace_processors([])
    services.assistant.trace_runs()
    tracing.instrument_app(app)  # the rest when it starts serving (`Services.lifespan`)
