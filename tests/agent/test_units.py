"""Small pieces of the agent: the fake model's stream, titles, error messages."""

from __future__ import annotations

import httpx2
import openai
import pytest
from agents import ModelSettings, ModelTracing

from app.agent.errors import stream_error_for
from app.agent.fake_model import FakeModel, FakeTurn, default_reply
from app.agent.title import fallback_title, write_title
from tests.helpers.server import free_port


async def events_of(model: FakeModel, text: str) -> list[object]:
    stream = model.stream_response(
        None,
        [{"role": "user", "content": text}],
        ModelSettings(),
        [],
        None,
        [],
        ModelTracing.DISABLED,
        previous_response_id=None,
        conversation_id=None,
        prompt=None,
    )
    return [event async for event in stream]


async def test_fake_model_streams_responses_api_events() -> None:
    model = FakeModel(tokens=4, delay=0)
    model.script.push(FakeTurn.call("add_task", title="x"))

    tool_turn = [getattr(e, "type", None) for e in await events_of(model, "hi")]
    text_turn = [getattr(e, "type", None) for e in await events_of(model, "hi")]

    assert tool_turn == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert text_turn[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert text_turn.count("response.output_text.delta") == 4
    assert text_turn[-1] == "response.completed"


def test_default_reply_is_exactly_the_configured_tokens() -> None:
    items = [{"role": "user", "content": [{"type": "input_text", "text": "a b c d e f"}]}]

    assert default_reply(items, 3) == "You said: a"  # type: ignore[arg-type]
    assert len(default_reply(items, 50).split()) == 50  # type: ignore[arg-type]


def test_fallback_title_is_the_first_words() -> None:
    assert fallback_title("Plan the  offsite") == "Plan the offsite"
    assert fallback_title("one two three four five six seven") == "one two three four five six…"
    assert fallback_title("   ") == "New conversation"
    assert len(fallback_title("x" * 500)) == 60


@pytest.mark.parametrize(
    ("status", "cls", "needle", "retry"),
    [
        (401, openai.AuthenticationError, "OPENAI_API_KEY", False),
        (404, openai.NotFoundError, "MODEL_API", False),  # more in test_model.py
        (400, openai.BadRequestError, "HTTP 400", True),
    ],
)
def test_provider_errors_name_what_to_fix(status, cls, needle, retry) -> None:
    request = httpx2.Request("POST", "http://x/v1/responses")
    error = stream_error_for(
        cls("no", response=httpx2.Response(status, request=request), body=None)
    )

    assert needle in error.message
    assert error.allow_retry is retry


async def test_unreachable_provider_names_the_base_url() -> None:
    # A port nothing listens on: the client cannot connect at all.
    port = free_port()
    client = openai.AsyncOpenAI(api_key="k", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)

    with pytest.raises(openai.APIConnectionError) as caught:
        await client.responses.create(model="m", input="hi")

    assert "OPENAI_BASE_URL" in stream_error_for(caught.value).message


async def test_title_falls_back_when_the_model_fails() -> None:
    model = FakeModel(tokens=3, delay=0)
    model.script.push(FakeTurn.fail(RuntimeError("down")), FakeTurn.say('"Lisbon offsite plan."'))

    assert (await write_title(model, "Plan the Lisbon offsite for the team")).text == (
        "Plan the Lisbon offsite for the…"
    )
    assert (await write_title(model, "Plan the Lisbon offsite")).text == "Lisbon offsite plan"
