"""What the client sends and how it reads what comes back, through its pluggable transport:
streams this server does not produce yet (SSE ids, for issue 18's re-attach; newer event kinds)
and answers from things in front of a server (a proxy's HTML error page)."""

from __future__ import annotations

import json
from datetime import datetime

import httpx
import pytest
from chatkit.types import (
    ChatKitReq,
    ErrorEvent,
    Page,
    ProgressUpdateEvent,
    Thread,
    ThreadCreatedEvent,
    ThreadsCreateReq,
    WidgetItem,
)
from pydantic import TypeAdapter

from app.agent.widgets import task_list_widget
from app.chat.client import ChatKitClient, ChatKitError, HTTPError
from app.chat.render import widget_text
from app.store.tasks import Task

URL = "http://chatkit.test/chatkit"
THREAD = Thread(id="thr_1", created_at=datetime(2026, 1, 1), items=Page())


def sse_response(body: str) -> httpx.MockTransport:
    return httpx.MockTransport(
        lambda _: httpx.Response(200, headers={"content-type": "text/event-stream"}, text=body)
    )


async def test_events_are_parsed_with_their_ids_comments_and_multiline_data() -> None:
    created = ThreadCreatedEvent(thread=THREAD).model_dump_json()
    body = (
        ": keep-alive\n\n"
        f"id: 1\ndata: {created}\n\n"
        'event: message\nid: 2\ndata: {"type": "progress_update",\ndata:  "text": "Working"}\n\n'
        ": keep-alive\n\n"
        'id: 3\ndata: {"type": "thread.item.teleported", "item_id": "x"}\n\n'  # a newer kind
        "id: 4\n\n"  # an id alone moves the last id on
        'data: {"type": "error", "message": "Boom", "allow_retry": true}\n\n'
    )
    async with ChatKitClient(URL, user="u", transport=sse_response(body)) as client:
        events = [event async for event in client.create_thread("Hi")]
        assert client.last_event_id == "4"  # where a re-attach would resume

    assert [type(event) for event in events] == [
        ThreadCreatedEvent,
        ProgressUpdateEvent,
        ErrorEvent,
    ]
    assert isinstance(events[1], ProgressUpdateEvent) and events[1].text == "Working"
    assert isinstance(events[2], ErrorEvent) and events[2].message == "Boom"


async def test_a_known_event_that_does_not_validate_is_an_error() -> None:
    body = 'data: {"type": "progress_update"}\n\n'  # no text
    async with ChatKitClient(URL, user="u", transport=sse_response(body)) as client:
        with pytest.raises(ChatKitError, match="Unreadable event"):
            _ = [event async for event in client.create_thread("Hi")]


async def test_requests_are_the_sdk_wire_models_with_the_identity_headers() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, text="")

    transport = httpx.MockTransport(answer)
    async with ChatKitClient(
        URL, token="jwt", domain_key="dk", headers={"X-Extra": "1"}, transport=transport
    ) as client:
        _ = [event async for event in client.create_thread("Hello", ["atc_1"])]

    (request,) = seen
    assert request.headers["authorization"] == "Bearer jwt"
    assert request.headers["x-chatkit-domain-key"] == "dk"
    assert request.headers["x-extra"] == "1"
    assert "x-user-id" not in request.headers
    parsed = TypeAdapter[ChatKitReq](ChatKitReq).validate_json(request.content)
    assert isinstance(parsed, ThreadsCreateReq)
    assert parsed.params.input.attachments == ["atc_1"]
    assert json.loads(request.content)["params"]["input"]["content"] == [
        {"type": "input_text", "text": "Hello"}
    ]


async def test_an_error_page_that_is_not_json_is_quoted_briefly() -> None:
    page = "<html><body>" + "Bad gateway " * 50 + "</body></html>"
    transport = httpx.MockTransport(lambda _: httpx.Response(502, text=page))
    async with ChatKitClient(URL, user="u", transport=transport) as client:
        with pytest.raises(HTTPError) as failed:
            await client.list_threads()
    assert failed.value.status == 502
    assert failed.value.message == page[:200]


async def test_a_stream_answered_with_json_is_an_error() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json={"data": []}))
    async with ChatKitClient(URL, user="u", transport=transport) as client:
        with pytest.raises(ChatKitError, match="did not answer with an event stream"):
            _ = [event async for event in client.create_thread("Hi")]


def test_a_widget_without_copy_text_is_read_from_its_tree() -> None:
    tasks = [
        Task("todo_1", "Buy milk", None, False, datetime(2026, 1, 1)),
        Task("todo_2", "Call mum", None, True, datetime(2026, 1, 1)),
    ]
    item = WidgetItem(
        id="w", thread_id="t", created_at=datetime(2026, 1, 1), widget=task_list_widget(tasks)
    )
    assert widget_text(item) == "Tasks · 1 open\nBuy milk\nCall mum"
    assert widget_text(item.model_copy(update={"copy_text": "as the server says"})) == (
        "as the server says"
    )
