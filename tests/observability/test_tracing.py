"""OpenTelemetry traces of a real turn: collected in memory, and sent over OTLP/HTTP to a
receiver on loopback; log lines carry the trace id; with no `OTEL_*` variable, nothing at all."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from agents import add_trace_processor, set_trace_processors
from agents.tracing import TracingProcessor, get_trace_provider
from agents.tracing.processors import BatchTraceProcessor
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind
from sqlalchemy import event, text

from app.logging import JsonFormatter
from app.main import create_app
from app.observability.sampling import DecidedTraceIds, SamplingGate
from app.observability.tracing import (
    SIGNAL_VARIABLES,
    RootSpanMiddleware,
    Tracing,
    without_spans,
)
from app.services import Services
from app.store.db import create_engine
from tests.conftest import make_settings, new_user
from tests.helpers.agent import MODEL_TITLES
from tests.helpers.apps import running_app
from tests.helpers.chatkit import create_thread_req, post, stream
from tests.helpers.fake_openai import FakeOpenAI, FakeReply
from tests.helpers.server import LOOPBACK

THREADS_LIST = {"type": "threads.list", "params": {}}
OTEL_VARIABLES = (*SIGNAL_VARIABLES, "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_PROTOCOL")


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def provider_settings(database_url: str, fake: FakeOpenAI, **overrides: Any) -> Any:
    return make_settings(
        database_url,
        model_provider="openai",
        openai_api_key="sk-test",
        openai_base_url=fake.base_url,
        openai_max_retries=0,
        **overrides,
    )


def attribute(span: ReadableSpan, name: str) -> Any:
    return (span.attributes or {}).get(name)


def url(span: ReadableSpan) -> Any:
    return attribute(span, "url.full") or attribute(span, "http.url")


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> Iterator[ReadableSpan]:
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        yield span


@contextmanager
def json_log_lines() -> Iterator[io.StringIO]:
    """Log lines as the app writes them, formatted while the request's context is current."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lines
    finally:
        root.removeHandler(handler)


async def test_a_turn_is_one_trace_of_http_db_model_and_agent_spans(postgres_url):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    caller = new_user()
    async with FakeOpenAI(tokens=4) as fake:
        fake.script.extend(
            [FakeReply.call("add_task", text="Adding.", title="Milk"), FakeReply("Added.")]
        )
        settings = provider_settings(postgres_url, fake, agent_config=MODEL_TITLES)
        services = dataclasses.replace(Services.build(settings), tracing=Tracing(provider))
        async with running_app(settings, services=services) as running:
            # The Agents SDK's export to OpenAI stays off: its processors are ours.
            processors = get_trace_provider()._multi_processor._processors  # type: ignore[attr-defined]
            assert not any(isinstance(p, BatchTraceProcessor) for p in processors)
            with json_log_lines() as logs:  # after create_app, which sets the root's handlers
                await stream(running.client, caller.user_id, create_thread_req("Add milk"))
                # A refusal from the edge is logged inside the request's span.
                refused = await post(running.client, None, create_thread_req())
                assert refused.status_code == 401

            async def probe(untraced: bool) -> None:  # as a background loop runs its statements
                if untraced:
                    without_spans()
                async with running.services.engine.connect() as conn:
                    await conn.execute(text(f"SELECT 'probe-{int(untraced)}'"))

            await asyncio.create_task(probe(untraced=True))
            await asyncio.create_task(probe(untraced=False))

    spans = exporter.get_finished_spans()
    probes = [str(attribute(s, "db.statement")) for s in spans if "probe-" in str(s.attributes)]
    assert probes == ["SELECT 'probe-0'"]  # the untraced task's statement left no span
    by_id = {span.context.span_id: span for span in spans}
    servers = [s for s in spans if s.kind == SpanKind.SERVER and s.name == "POST /chatkit"]
    assert len(servers) == 2
    turn, refusal = sorted(servers, key=lambda s: s.start_time or 0)
    # The root span names the request and the user, hashed.
    assert attribute(turn, "chatkit.request_id")
    assert attribute(turn, "enduser.id") == hashlib.sha256(caller.user_id.encode()).hexdigest()[:16]
    in_turn = [s for s in spans if s.context.trace_id == turn.context.trace_id]
    # Every span of the turn hangs from the request's span.
    for span in in_turn:
        assert span is turn or turn in ancestors(span, by_id), span.name
    database = [s for s in in_turn if attribute(s, "db.system") or attribute(s, "db.system.name")]
    assert database
    # Statements, not the pool's checkouts (a span each, a third of a turn's spans).
    assert all(attribute(s, "db.statement") for s in database)
    assert "connect" not in {s.name for s in spans}
    # Those that run on the driver when nothing listens too (`SingleStatements`).
    statements = " ".join(str(attribute(s, "db.statement")) for s in database)
    assert "turn_locks" in statements and "FROM thread_items" in statements
    model_calls = [
        s for s in in_turn if s.kind == SpanKind.CLIENT and "/v1/responses" in str(url(s))
    ]
    assert len(model_calls) == len(fake.received) == 3  # two answers and a title
    kinds = {attribute(s, "openinference.span.kind") for s in in_turn}
    assert {"AGENT", "LLM", "TOOL"} <= kinds
    [tool] = [s for s in in_turn if attribute(s, "openinference.span.kind") == "TOOL"]
    assert tool.name == "add_task"
    # A model call's HTTP request is inside its LLM span.
    llm_ids = {
        s.context.span_id for s in in_turn if attribute(s, "openinference.span.kind") == "LLM"
    }
    streamed = [
        s for s in model_calls if any(a.context.span_id in llm_ids for a in ancestors(s, by_id))
    ]
    assert len(streamed) == 2
    # What the user wrote is not recorded.
    assert not any("Add milk" in json.dumps(dict(s.attributes or {}), default=str) for s in spans)
    # Log lines carry the trace id of the request they were written in.
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    [refusal_line] = [line for line in lines if line["msg"].startswith("Refused POST /chatkit")]
    assert refusal_line["trace_id"] == format(refusal.context.trace_id, "032x")
    assert {line["trace_id"] for line in lines if "trace_id" in line} >= {
        format(turn.context.trace_id, "032x")
    }


@pytest.mark.parametrize("gated", [True, False], ids=["gated", "span-first"])
async def test_an_unsampled_request_runs_with_instrumentation_suppressed(postgres_url, gated):
    """Its spans would be dropped with their parent: the instrumentations do not even run, in
    the request or in its turn's task (which starts in the request's context), and the Agents
    SDK does not trace its run (OpenInference would serialise the run's input for nothing).
    Gated (the ids `from_environment` gives), the request's own span is not started either."""
    exporter = InMemorySpanExporter()
    ids = DecidedTraceIds() if gated else None
    never = StaticSampler(Decision.DROP)  # ALWAYS_OFF's class: the gate applies
    decisions = recording(never)
    provider = TracerProvider(sampler=never, id_generator=ids)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    caller = new_user()
    enabled: list[bool] = []

    def note(*_: Any) -> None:
        enabled.append(is_instrumentation_enabled())

    async with FakeOpenAI(tokens=4) as fake:
        fake.script.extend(
            [FakeReply.call("add_task", text="Adding.", title="Milk"), FakeReply("Added.")]
        )
        settings = provider_settings(postgres_url, fake)
        services = dataclasses.replace(Services.build(settings), tracing=Tracing(provider))
        async with running_app(settings, services=services) as running:
            recorder = Recorder()
            add_trace_processor(recorder)
            event.listen(running.services.engine.sync_engine, "before_cursor_execute", note)
            events = await stream(running.client, caller.user_id, create_thread_req("Add milk"))
            asked = [d.name for d in decisions]  # the request's own questions
            event.remove(running.services.engine.sync_engine, "before_cursor_execute", note)
            tasks = await running.services.tasks.list(caller.user_id)
            assistant = running.services.assistant
            for sampler, untraced in ((ALWAYS_OFF, True), (ALWAYS_ON, False)):
                tracer = TracerProvider(sampler=sampler).get_tracer("test")
                with tracer.start_as_current_span("POST /chatkit"):
                    assert assistant._run_config().tracing_disabled is untraced
            assert assistant._run_config().tracing_disabled is False  # outside any request
    set_trace_processors([])
    assert recorder.seen == []
    assert [e for e in events if e["type"] == "error"] == []
    assert [task.title for task in tasks] == ["Milk"]  # the tool ran, its statements too
    assert enabled and not any(enabled)
    assert exporter.get_finished_spans() == ()
    # Gated, the request's span was never started (only the gate asked the sampler).
    assert asked == (["HTTP"] if gated else ["POST /chatkit"])


class Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: decodes each `ExportTraceServiceRequest` it is sent."""

    received: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.headers["Content-Type"] == "application/x-protobuf"
        self.server.received.append(ExportTraceServiceRequest.FromString(body))  # type: ignore[attr-defined]
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    server = ThreadingHTTPServer((LOOPBACK, 0), Receiver)
    received: list[ExportTraceServiceRequest] = []
    server.received = received  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Asked:
    """What a sampler was asked: the span's name and trace id, and its answer."""

    name: str
    trace_id: int
    decision: Decision


def recording(sampler: Sampler) -> list[Asked]:
    """Note every question `sampler` (this instance, its class unchanged) answers."""
    asked: list[Asked] = []
    should_sample = sampler.should_sample

    def noting(parent: Any, trace_id: int, name: str, *args: Any, **kwargs: Any) -> Any:
        result: SamplingResult = should_sample(parent, trace_id, name, *args, **kwargs)
        asked.append(Asked(name, trace_id, result.decision))
        return result

    sampler.should_sample = noting  # type: ignore[method-assign,assignment]
    return asked


async def test_the_gate_decides_each_request_once_and_the_span_agrees(postgres_url):
    """The gate asks the sampler first; a sampled request's span has the trace id it drew (so
    the instrumentation's own question gets the same answer, and the ratio is not applied
    twice); an unsampled one never reaches the instrumentation."""
    exporter = InMemorySpanExporter()
    sampler = TraceIdRatioBased(0.5)
    decisions = recording(sampler)
    provider = TracerProvider(sampler=sampler, id_generator=DecidedTraceIds())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = make_settings(postgres_url)
    services = dataclasses.replace(Services.build(settings), tracing=Tracing(provider))
    caller = new_user()
    async with running_app(settings, services=services) as running:
        assert (
            isinstance(running.app.middleware_stack, SamplingGate)
            or running.app.middleware_stack is None
        )
        for _ in range(40):
            response = await post(running.client, caller.user_id, THREADS_LIST)
            assert response.status_code == 200, response.text
        assert isinstance(running.app.middleware_stack, SamplingGate)
    asked: dict[int, list[Decision]] = {}
    for decision in decisions:
        asked.setdefault(decision.trace_id, []).append(decision.decision)
    assert len(asked) == 40  # one trace id per request
    assert [d.name for d in decisions].count("HTTP") == 40  # the gate's question, once each
    # Sampled: the gate, then the request's span, then (a ratio is not parent-based) each
    # statement's span asked with the same trace id; dropped: the gate alone.
    sampled = {t for t, d in asked.items() if len(d) > 2 and set(d) == {Decision.RECORD_AND_SAMPLE}}
    dropped = {t for t, d in asked.items() if d == [Decision.DROP]}
    assert sampled and dropped and sampled | dropped == set(asked)
    roots = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert {s.context.trace_id for s in roots} == sampled
    assert len(roots) == len(sampled)


@pytest.mark.parametrize("flags", ["01", "00"])
async def test_the_gate_follows_a_sampled_or_unsampled_parent(postgres_url, flags):
    exporter = InMemorySpanExporter()
    sampler = ParentBased(TraceIdRatioBased(0.5))
    decisions = recording(sampler)
    provider = TracerProvider(sampler=sampler, id_generator=DecidedTraceIds())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = make_settings(postgres_url)
    services = dataclasses.replace(Services.build(settings), tracing=Tracing(provider))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace_id}-00f067aa0ba902b7-{flags}"
    async with running_app(settings, services=services) as running:
        for _ in range(5):
            response = await post(
                running.client, new_user().user_id, THREADS_LIST, traceparent=parent
            )
            assert response.status_code == 200, response.text
    roots = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    expected = 5 if flags == "01" else 0
    assert [format(s.context.trace_id, "032x") for s in roots] == [trace_id] * expected
    asked_by = [d.name for d in decisions]
    assert asked_by.count("HTTP") == 5  # the gate decided each request
    if flags == "00":  # and for an unsampled parent, it alone: no span was started
        assert asked_by == ["HTTP"] * 5


def test_environment_tracing_decides_at_the_gate():
    tracing = Tracing.from_environment(environ={"OTEL_TRACES_EXPORTER": "console"})
    assert tracing is not None
    assert isinstance(tracing.provider.id_generator, DecidedTraceIds)
    tracing.provider.shutdown()


async def test_spans_reach_an_otlp_receiver(postgres_url, monkeypatch):
    caller = new_user()
    with otlp_receiver() as (endpoint, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "chatkit-under-test")
        async with FakeOpenAI(tokens=3) as fake:
            settings = provider_settings(postgres_url, fake, trace_user_id="raw")
            create_app(settings)  # uvicorn builds the app once before the one it serves
            async with running_app(settings) as running:
                assert running.services.tracing is not None
                await stream(running.client, caller.user_id, create_thread_req("Hi"))
        # Leaving the app flushed its spans.
    spans = [
        (resource_spans.resource, span)
        for request in received
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    [(resource, root)] = [(r, s) for r, s in spans if s.name == "POST /chatkit"]
    service = {a.key: a.value.string_value for a in resource.attributes}["service.name"]
    assert service == "chatkit-under-test"
    root_attributes = {a.key: a.value.string_value for a in root.attributes}
    assert root_attributes["enduser.id"] == caller.user_id  # TRACE_USER_ID=raw
    same_trace = [s for _, s in spans if s.trace_id == root.trace_id]
    assert len(same_trace) > 5
    # The served app's statements are traced, though an app built before it never served.
    assert any(a.key == "db.system" for s in same_trace for a in s.attributes)
    assert any(s.name.startswith("POST") and s.kind == s.SPAN_KIND_CLIENT for s in same_trace)


async def test_without_otel_variables_nothing_is_installed(postgres_url):
    processors_before = get_trace_provider()._multi_processor._processors  # type: ignore[attr-defined]
    async with running_app(make_settings(postgres_url)) as running:
        services, app = running.services, running.app
        assert services.tracing is None
        assert services.assistant.run_config.tracing_disabled
        assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
        assert RootSpanMiddleware not in [getattr(m, "cls", None) for m in app.user_middleware]
        for instrumentor in (
            SQLAlchemyInstrumentor(),
            HTTPXClientInstrumentor(),
            HTTPX2ClientInstrumentor(),
        ):
            assert not instrumentor.is_instrumented_by_opentelemetry
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        assert not trace.get_current_span().is_recording()
        await stream(running.client, new_user().user_id, create_thread_req("Hi"))
    assert get_trace_provider()._multi_processor._processors == processors_before  # type: ignore[attr-defined]


def test_only_the_standard_variables_turn_tracing_on():
    assert Tracing.from_environment(environ={}) is None
    assert Tracing.from_environment(environ={"OTEL_TRACES_EXPORTER": "none"}) is None
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert Tracing.from_environment(environ={**on, "OTEL_SDK_DISABLED": "true"}) is None
    tracing = Tracing.from_environment(environ=on)
    assert tracing is not None
    tracing.provider.shutdown()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("OTEL_TRACES_EXPORTER", "zipkin"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
)
def test_an_unsupported_exporter_is_refused_by_name(variable, value):
    from app.config import ConfigurationError

    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", variable: value}
    with pytest.raises(ConfigurationError, match=variable):
        Tracing.from_environment(environ=environ)


async def test_instrumentations_can_be_left_out_by_their_standard_names(postgres_url):
    environ = {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "sqlalchemy, openai_agents,fastapi",
    }
    tracing = Tracing.from_environment(environ=environ)
    assert tracing is not None
    assert tracing.disabled == {"sqlalchemy", "openai_agents", "fastapi"}
    engine = create_engine(make_settings(postgres_url))
    try:
        tracing.start(engine)
        installed = {type(i).__name__ for i in tracing._installed}
        assert installed == {"HTTPXClientInstrumentor", "HTTPX2ClientInstrumentor"}
        app = FastAPI()
        tracing.instrument_app(app)
        assert tracing._app is None  # fastapi left out: the app is not wrapped
    finally:
        await tracing.shutdown()
        await engine.dispose()


async def test_without_fastapis_instrumentation_a_requests_statements_are_still_traced(
    postgres_url,
):
    """No request span then, but nothing suppresses the statements' and the run's spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=DecidedTraceIds())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = make_settings(postgres_url)
    tracing = Tracing(provider, disabled=frozenset({"fastapi"}))
    services = dataclasses.replace(Services.build(settings), tracing=tracing)
    async with running_app(settings, services=services) as running:
        await stream(running.client, new_user().user_id, create_thread_req("Hi"))
    spans = exporter.get_finished_spans()
    assert not [s for s in spans if s.kind == SpanKind.SERVER]
    statements = " ".join(str(attribute(s, "db.statement")) for s in spans)
    assert "turn_locks" in statements and "FROM thread_items" in statements


class Recorder(TracingProcessor):
    """An Agents SDK processor that notes what it is handed."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_trace_start(self, trace: Any) -> None:
        self.seen.append(f"trace start {trace.trace_id}")

    def on_trace_end(self, trace: Any) -> None:
        self.seen.append(f"trace end {trace.trace_id}")

    def on_span_start(self, span: Any) -> None:
        self.seen.append(f"span start {span.trace_id}")

    def on_span_end(self, span: Any) -> None:
        self.seen.append(f"span end {span.trace_id}")

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass
