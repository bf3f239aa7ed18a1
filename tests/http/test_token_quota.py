"""Token quotas: a spent day or month refuses a turn before the model is called (an error event
in the stream, a 429 for a request that does not stream), and `GET /chatkit/usage` reports it."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from app.agent.fake_model import FakeModel, FakeTurn
from app.services import Services
from app.store.db import utcnow
from app.store.models import ThreadRow
from app.store.quotas import Periods
from app.store.tokens import TokenCounts
from tests.helpers.chatkit import (
    create_thread_req,
    created_thread_id,
    error_events,
    post,
    sse_events,
    stream,
)
from tests.helpers.database import owned_rows

DAILY, MONTHLY = 100, 1000
APP_SETTINGS = {
    "token_quota_daily": f"free={DAILY},pro=unlimited",
    "token_quota_monthly": f"free={MONTHLY},pro=unlimited",
    "usage_prices": "fake=1/0.5/2,gpt-other=10/10/10",
}


def new_user() -> str:
    return f"u-{uuid4().hex[:10]}"


async def spend(services: Services, user: str, tokens: int, *, days_ago: int = 0) -> None:
    """A turn of `tokens` (input and output split) recorded as if it had run."""
    at = utcnow() - timedelta(days=days_ago)
    counts = TokenCounts(input=tokens // 2, output=tokens - tokens // 2)
    await services.quota.tokens.record(user, "thr_x", None, "fake", counts, at)


async def test_a_spent_day_refuses_the_turn_before_the_model(
    client, services, fake_model: FakeModel
) -> None:
    user = new_user()
    await spend(services, user, DAILY)
    response = await post(client, user, create_thread_req("Hello"))

    assert response.status_code == 200
    [event] = sse_events(response)  # the refusal alone: no thread, no message
    assert event["type"] == "error" and event["allow_retry"] is False
    assert f"used all {DAILY:,} tokens of today on the free plan" in event["message"]
    assert "00:00 UTC" in event["message"]
    assert fake_model.script.calls == []
    assert await owned_rows(services.engine, ThreadRow, user_id=user) == 0


async def test_the_turn_that_crosses_the_line_finishes_and_the_next_is_refused(
    client, services, fake_model: FakeModel
) -> None:
    user = new_user()
    await spend(services, user, DAILY - 1)
    fake_model.script.push(FakeTurn.say("one two three"))
    events = await stream(client, user, create_thread_req("Hello"))
    assert error_events(events) == []
    assert len(fake_model.script.calls) == 1

    refused = await stream(client, user, create_thread_req("Again"))
    assert [event["type"] for event in refused] == ["error"]
    assert len(fake_model.script.calls) == 1


@pytest.mark.usefixtures("fake_model")
async def test_a_spent_month_refuses_and_last_month_does_not_count(client, services) -> None:
    user = new_user()
    days_into_month = (utcnow() - Periods.at(utcnow()).month).days
    await spend(services, user, 10 * MONTHLY, days_ago=days_into_month + 1)  # last month
    events = await stream(client, user, create_thread_req("Hello"))
    assert error_events(events) == []

    await spend(services, user, MONTHLY, days_ago=days_into_month)  # this month's first day
    [event] = await stream(client, user, create_thread_req("Again"))
    assert f"used all {MONTHLY:,} tokens of this month" in event["message"]


@pytest.mark.usefixtures("fake_model")
async def test_a_request_that_does_not_stream_is_a_429(client, services) -> None:
    """`threads.sync_custom_action` is the protocol's non-streaming hook that may call a model
    (this server does not implement it: a 501 when under quota)."""
    user = new_user()
    thread_id = created_thread_id(await stream(client, user, create_thread_req("Hello")))
    payload = {
        "type": "threads.sync_custom_action",
        "params": {"thread_id": thread_id, "item_id": None, "action": {"type": "x"}},
    }
    assert (await post(client, user, payload)).status_code == 501

    await spend(services, user, DAILY)
    response = await post(client, user, payload)
    assert response.status_code == 429
    assert response.json()["error"] == "token_quota_exceeded"
    assert "tokens of today" in response.json()["message"]
    assert 0 < int(response.headers["Retry-After"]) <= 24 * 3600


@pytest.mark.usefixtures("fake_model")
async def test_a_tier_without_a_cap_is_not_refused(client, services) -> None:
    user = new_user()
    await spend(services, user, 10 * MONTHLY)
    events = await stream(client, user, create_thread_req("Hello"), **{"X-User-Tier": "pro"})
    assert error_events(events) == []


async def test_requests_that_call_no_model_are_not_counted(client, services) -> None:
    user = new_user()
    await spend(services, user, 10 * MONTHLY)
    response = await post(client, user, {"type": "threads.list", "params": {}})
    assert response.status_code == 200


async def test_usage_report(client, services, fake_model: FakeModel) -> None:
    user = new_user()
    fake_model.script.push(FakeTurn.say("one two three four"))
    await stream(client, user, create_thread_req("Hello"))
    await services.quota.tokens.record(
        user, "thr_x", None, "gpt-other", TokenCounts(10, 4, 6, 2), utcnow()
    )
    await services.quota.tokens.record(
        user, "thr_x", None, "unknown-model", TokenCounts(1, 0, 1, 0), utcnow()
    )
    await spend(services, user, 50, days_ago=40)  # neither today nor this month

    response = await client.get("/chatkit/usage", headers={"X-User-Id": user})
    assert response.status_code == 200
    report = response.json()
    today = report["today"]
    assert (today["turns"], today["input_tokens"], today["output_tokens"]) == (3, 11, 11)
    assert (today["cached_input_tokens"], today["reasoning_tokens"]) == (4, 2)
    by_model = {row["model"]: row for row in today["by_model"]}
    assert by_model["fake"]["output_tokens"] == 4
    assert by_model["fake"]["cost"] == pytest.approx(4 * 2 / 1e6)
    # gpt-other: 6 uncached and 4 cached input, 6 output, all at 10 per million.
    assert by_model["gpt-other"]["cost"] == pytest.approx(16 * 10 / 1e6)
    assert by_model["unknown-model"]["cost"] is None
    assert today["unpriced_models"] == ["unknown-model"]
    assert today["cost"] == pytest.approx((8 + 160) / 1e6)
    assert report["this_month"]["total_tokens"] == 22
    assert report["quota"]["daily"] == {
        "limit": DAILY,
        "used": 22,
        "remaining": DAILY - 22,
        "resets_at": report["quota"]["daily"]["resets_at"],
    }
    assert report["quota"]["monthly"]["remaining"] == MONTHLY - 22
    assert report["tier"] == "free"


async def test_usage_needs_an_identity(client) -> None:
    response = await client.get("/chatkit/usage")
    assert response.status_code == 401
    assert response.json()["error"]
