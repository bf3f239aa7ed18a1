"""Prometheus metrics after real turns through `POST /chatkit`, read back from `/metrics` and
parsed with `prometheus_client.parser`: counts, labels, and what is never a label."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.observability.agent_metrics import MeteredModel
from app.observability.metrics_http import MetricsEndpoint, RequestMetricsMiddleware
from tests.conftest import make_settings
from tests.helpers.apps import RunningApp, running_app
from tests.helpers.chatkit import (
    add_message_req,
    create_thread_req,
    created_thread_id,
    error_events,
    post,
    stream,
)
from tests.helpers.fake_openai import INPUT_TOKENS, FakeOpenAI, FakeReply

TOKEN = "metrics-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PER_MINUTE = 4
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@asynccontextmanager
async def metered_app(
    postgres_url: str, fake: FakeOpenAI, **settings: Any
) -> AsyncIterator[RunningApp]:
    values: dict[str, Any] = {
        "metrics_enabled": True,
        "metrics_token": TOKEN,
        "model_provider": "openai",
        "openai_api_key": "sk-test",
        "openai_base_url": fake.base_url,
        "openai_max_retries": 0,
        "chatkit_model": "gpt-metered",
        "rate_limit_requests_per_minute": PER_MINUTE,
        **settings,
    }
    async with running_app(make_settings(postgres_url, **values)) as running:
        yield running


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    return parse(response.text)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def user() -> str:
    return f"user-{uuid4().hex[:12]}"


async def test_turns_show_up_in_the_metrics(postgres_url):
    async with (
        FakeOpenAI(tokens=6) as fake,
        metered_app(postgres_url, fake) as running,
    ):
        client = running.client
        before = await scrape(client)
        alice, bob = user(), user()
        fake.script.extend(
            [FakeReply.call("add_task", text="Adding it.", title="Milk"), FakeReply("Added.")]
        )
        events = await stream(client, alice, create_thread_req("Add milk"))
        thread_id = created_thread_id(events)
        # A tool that fails: the model reads why, the count says `error`.
        fake.script.extend(
            [FakeReply.call("complete_task", task_id="tsk_unknown"), FakeReply("No such task.")]
        )
        await stream(client, alice, add_message_req(thread_id, "Thanks"))
        listed = await post(client, alice, {"type": "threads.list", "params": {}})
        assert listed.status_code == 200
        unknown = await post(client, alice, {"type": "threads.teleport", "params": {}})
        assert unknown.status_code == 400
        # The provider fails (the answer, and the title asked for beside it): errors of a kind.
        fake.failure = "500"
        answered = len(fake.received)
        failed = await stream(client, bob, create_thread_req("Hello"))
        assert error_events(failed)
        failures = len(fake.received) - answered
        fake.failure = None
        # Over the per-minute limit: refusals, by reason.
        statuses = [
            (await post(client, bob, {"type": "threads.list", "params": {}})).status_code
            for _ in range(PER_MINUTE)
        ]
        assert statuses[-1] == 429
        after = await scrape(client)

    def count(request_type: str, status: str) -> float:
        return delta(
            before, after, "chatkit_requests_total", request_type=request_type, status=status
        )

    assert count("threads.create", "200") == 2
    assert count("threads.add_user_message", "200") == 1
    assert count("threads.list", "200") == 1 + statuses.count(200)
    assert count("threads.list", "429") == statuses.count(429) >= 1
    assert count("other", "400") == 1  # an unknown type does not become a label
    refusals = delta(
        before,
        after,
        "chatkit_rate_limit_refusals_total",
        request_type="threads.list",
        reason="rate_limited",
    )
    assert refusals == statuses.count(429)
    # Three streams: each has a time to first event and a duration; none is open now.
    for name in (
        "chatkit_time_to_first_event_seconds_count",
        "chatkit_turn_duration_seconds_count",
    ):
        assert delta(before, after, name, request_type="threads.create") == 2
        assert delta(before, after, name, request_type="threads.add_user_message") == 1
    assert delta(before, after, "chatkit_open_streams") == 0
    assert after[("chatkit_open_streams", frozenset())] == 0
    assert after[("chatkit_db_connections_in_use", frozenset())] == 0
    # Every model call (answers and titles) took time; the failed one is an error of its kind.
    calls = len(fake.received)
    model = {"model": "gpt-metered"}
    assert delta(before, after, "chatkit_model_call_duration_seconds_count", **model) == calls
    errors = delta(before, after, "chatkit_model_errors_total", kind="server_error", **model)
    assert errors == failures >= 1
    # Tokens as the provider reported them: every successful call had INPUT_TOKENS of input.
    assert delta(before, after, "chatkit_model_tokens_total", kind="input", **model) == (
        INPUT_TOKENS * (calls - failures)
    )
    assert delta(before, after, "chatkit_model_tokens_total", kind="output", **model) > 0
    assert delta(before, after, "chatkit_tool_calls_total", tool="add_task", outcome="ok") == 1
    assert delta(before, after, "chatkit_tool_calls_total", tool="add_task", outcome="error") == 0
    failed_tool = {"tool": "complete_task", "outcome": "error"}
    assert delta(before, after, "chatkit_tool_calls_total", **failed_tool) == 1
    # Bounded labels: no user or thread id anywhere.
    label_values = {value for (_, labels) in after for (_, value) in labels}
    assert not label_values & {alice, bob, thread_id}
    assert "threads.teleport" not in label_values


async def test_metrics_need_the_token(postgres_url):
    async with (
        FakeOpenAI() as fake,
        metered_app(postgres_url, fake) as running,
    ):
        client = running.client
        missing = await client.get("/metrics")
        wrong = await client.get(
            "/metrics", headers={"Authorization": "Bearer wrong-token-1234567"}
        )
        right = await client.get("/metrics", headers=AUTH)
    for refused in (missing, wrong):
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthorized"
        assert "METRICS_TOKEN" in refused.json()["message"]
    assert right.status_code == 200
    assert "chatkit_requests_total" in right.text or "chatkit_requests" in right.text


async def test_metrics_are_off_unless_enabled(postgres_url):
    async with running_app(make_settings(postgres_url)) as running:
        response = await running.client.get("/metrics", headers=AUTH)
        # Nothing counts either: no middleware, no model wrapper, no tool counts, no SDK tracing.
        middleware = [getattr(m, "cls", None) for m in running.app.user_middleware]
        assert RequestMetricsMiddleware not in middleware
        assert not isinstance(running.services.assistant.agent.model, MeteredModel)
        assert running.services.assistant.run_config.tracing_disabled
        assert running.services.assistant.traced_run_config is None
        assert not running.services.assistant.hooks.metered
        assert not any(
            isinstance(getattr(route, "app", None), MetricsEndpoint)
            or getattr(route, "path", "") == "/metrics"
            for route in running.app.routes
        )
    assert response.status_code == 404
