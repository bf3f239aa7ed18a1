"""With ON_DISCONNECT=cancel, a client that disconnects mid-answer leaves a consistent thread
(real uvicorn, real socket). The default, finishing the answer, is in `tests/turns/`.

The SDK's `handle_stream_cancelled` saves the partial answer and a hidden note; it runs inside a
task Starlette has cancelled, so our store writes must survive that.
"""

from __future__ import annotations

import asyncio
import gc
import json

import httpx
from chatkit.types import AssistantMessageItem, SDKHiddenContextItem, UserMessageItem

from tests.conftest import make_settings
from tests.helpers.agent import stored_items
from tests.helpers.apps import running_app
from tests.helpers.chatkit import add_message_req, create_thread_req, headers_for, stream

DELTAS_BEFORE_LEAVING = 5
POLLS = 500


async def test_disconnect_mid_answer_saves_the_partial_answer(database_url, user, caplog):
    # A long, slow answer: the client leaves long before it ends.
    settings = make_settings(
        database_url, fake_model_tokens=5000, fake_model_delay_ms=2, on_disconnect="cancel"
    )
    async with running_app(settings, socket=True) as running:
        client, model = running.client, running.fake_model
        client.headers.update(headers_for(user.user_id))
        thread_id, seen = await read_then_leave(client)

        for _ in range(POLLS):
            items = await stored_items(running.services, user.user_id, thread_id)
            if len(items) >= 3 and model.script.calls[-1].closed_early:
                break
            await asyncio.sleep(0.01)

        assert [type(item) for item in items] == [
            UserMessageItem,
            AssistantMessageItem,
            SDKHiddenContextItem,
        ]
        partial = "".join(part.text for part in items[1].content)
        assert partial.startswith(seen) and len(partial.split()) < 5000
        # The model was stopped, not left generating for nobody.
        assert model.script.calls[-1].closed_early
        assert not model.script.calls[-1].finished

        # The thread goes on: the next turn sees the partial answer and the cancellation note.
        model.tokens = 3
        events = await stream(client, user.user_id, add_message_req(thread_id, "Go on"))
        assert [e["type"] for e in events if e["type"] == "error"] == []
        sent = str(model.script.calls[-1].input)
        assert "The user cancelled the stream" in sent

    # Nothing of the cancelled turn was left pending (asyncio logs such tasks when collected).
    gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


async def read_then_leave(client: httpx.AsyncClient) -> tuple[str, str]:
    """Stream a new thread's answer, leave after a few deltas; return its id and the text seen."""
    thread_id, text, deltas = "", "", 0
    body = json.dumps(create_thread_req("Tell me a long story"))
    headers = {"Content-Type": "application/json"}
    async with client.stream("POST", "/chatkit", content=body, headers=headers) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[len("data: ") :])
            if event["type"] == "thread.created":
                thread_id = event["thread"]["id"]
            if event["type"] == "thread.item.updated" and "delta" in event["update"]:
                text += event["update"]["delta"]
                deltas += 1
                if deltas == DELTAS_BEFORE_LEAVING:
                    break
    return thread_id, text
