"""Every request type the SDK dispatches, through `POST /chatkit`, checked against the store."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from chatkit.store import StoreItemType
from chatkit.types import (
    ClientToolCallItem,
    FileAttachment,
    StructuredInputFreeform,
    StructuredInputItem,
    UserMessageItem,
)

from app.store.store import new_id
from tests.conftest import new_user
from tests.helpers.chatkit import (
    add_message_req,
    create_thread_req,
    created_thread_id,
    event_types,
    post,
    sse_events,
    stream,
    user_input,
)


async def new_thread(client, user, text: str = "Hello") -> str:
    return created_thread_id(await stream(client, user.user_id, create_thread_req(text)))


async def test_threads_create_streams_and_stores(client, services, user) -> None:
    events = await stream(client, user.user_id, create_thread_req("Hello there"))

    types = event_types(events)
    assert types[0] == "thread.created"
    assert "stream_options" in types
    done = [e["item"] for e in events if e["type"] == "thread.item.done"]
    assert [item["type"] for item in done] == ["user_message", "assistant_message"]
    assert done[0]["content"][0]["text"] == "Hello there"

    thread_id = created_thread_id(events)
    stored = await services.store.load_thread_items(thread_id, None, 10, "asc", user)
    assert [item.id for item in stored.data] == [item["id"] for item in done]


async def test_add_user_message_appends(client, services, user) -> None:
    thread_id = await new_thread(client, user)
    events = await stream(client, user.user_id, add_message_req(thread_id, "Again"))
    assert event_types(events)[0] == "thread.item.done"
    stored = await services.store.load_thread_items(thread_id, None, 10, "asc", user)
    assert [i.type for i in stored.data] == ["user_message", "assistant_message"] * 2


async def test_get_by_id_returns_thread_with_items(client, user) -> None:
    thread_id = await new_thread(client, user)
    response = await post(
        client, user.user_id, {"type": "threads.get_by_id", "params": {"thread_id": thread_id}}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == thread_id
    assert [i["type"] for i in body["items"]["data"]] == ["user_message", "assistant_message"]


async def test_threads_list_paginates(client, user) -> None:
    ids = [await new_thread(client, user, f"t{n}") for n in range(3)]
    first = (
        await post(client, user.user_id, {"type": "threads.list", "params": {"limit": 2}})
    ).json()
    assert [t["id"] for t in first["data"]] == ids[::-1][:2]
    assert first["has_more"] is True
    rest = (
        await post(
            client,
            user.user_id,
            {"type": "threads.list", "params": {"limit": 2, "after": first["after"]}},
        )
    ).json()
    assert [t["id"] for t in rest["data"]] == [ids[0]]
    assert rest["has_more"] is False


async def test_threads_update_renames(client, services, user) -> None:
    thread_id = await new_thread(client, user)
    response = await post(
        client,
        user.user_id,
        {"type": "threads.update", "params": {"thread_id": thread_id, "title": "Renamed"}},
    )
    assert response.status_code == 200 and response.json()["title"] == "Renamed"
    assert (await services.store.load_thread(thread_id, user)).title == "Renamed"


async def test_threads_delete_removes(client, services, user) -> None:
    thread_id = await new_thread(client, user)
    response = await post(
        client, user.user_id, {"type": "threads.delete", "params": {"thread_id": thread_id}}
    )
    assert response.status_code == 200
    listed = await services.store.load_threads(10, None, "desc", user)
    assert thread_id not in [t.id for t in listed.data]
    again = await post(
        client, user.user_id, {"type": "threads.delete", "params": {"thread_id": thread_id}}
    )
    assert again.status_code == 404


async def test_items_list_hides_hidden_context(client, user) -> None:
    thread_id = await new_thread(client, user)
    response = await post(
        client,
        user.user_id,
        {"type": "items.list", "params": {"thread_id": thread_id, "order": "asc", "limit": 1}},
    )
    page = response.json()
    assert response.status_code == 200
    assert [i["type"] for i in page["data"]] == ["user_message"]
    assert page["has_more"] is True and page["after"] == page["data"][0]["id"]


async def test_retry_after_item_replaces_the_answer(client, services, user) -> None:
    thread_id = await new_thread(client, user, "Question")
    before = await services.store.load_thread_items(thread_id, None, 10, "asc", user)
    user_item, old_answer = before.data

    events = await stream(
        client,
        user.user_id,
        {
            "type": "threads.retry_after_item",
            "params": {"thread_id": thread_id, "item_id": user_item.id},
        },
    )
    new_answer = next(e["item"] for e in events if e["type"] == "thread.item.done")
    after = await services.store.load_thread_items(thread_id, None, 10, "asc", user)
    assert [i.id for i in after.data] == [user_item.id, new_answer["id"]]
    assert new_answer["id"] != old_answer.id


async def test_retry_after_unknown_or_non_user_item(client, services, user) -> None:
    thread_id = await new_thread(client, user)
    items = await services.store.load_thread_items(thread_id, None, 10, "asc", user)
    for item_id, status in [("msg_unknown", 404), (items.data[1].id, 400)]:
        response = await post(
            client,
            user.user_id,
            {
                "type": "threads.retry_after_item",
                "params": {"thread_id": thread_id, "item_id": item_id},
            },
        )
        assert response.status_code == status, response.text
        assert response.json()["error"]
    assert await services.store.load_thread_items(thread_id, None, 10, "asc", user) == items


T = TypeVar("T", ClientToolCallItem, StructuredInputItem)


async def thread_with(client, services, user, kind: StoreItemType, item: type[T], **fields) -> T:
    """A new thread of the user's, with an `item` of the SDK's type `kind` after its message."""
    thread_id = await new_thread(client, user)
    added = item(id=new_id(kind), thread_id=thread_id, created_at=datetime.now(), **fields)
    await services.store.add_thread_item(thread_id, added, user)
    return added


async def test_add_client_tool_output_completes_pending_call(client, services, user) -> None:
    call = await thread_with(
        client,
        services,
        user,
        "tool_call",
        ClientToolCallItem,
        call_id="call_1",
        name="get_location",
        arguments={},
    )
    thread_id, store = call.thread_id, services.store

    events = await stream(
        client,
        user.user_id,
        {
            "type": "threads.add_client_tool_output",
            "params": {"thread_id": thread_id, "result": {"city": "Paris"}},
        },
    )
    assert "stream_options" in event_types(events)
    stored = await store.load_item(thread_id, call.id, user)
    assert isinstance(stored, ClientToolCallItem)
    assert stored.status == "completed" and stored.output == {"city": "Paris"}


async def test_client_tool_output_without_pending_call_is_400(client, services, user) -> None:
    thread_id = await new_thread(client, user)
    before = await services.store.load_thread_items(thread_id, None, 10, "asc", user)
    response = await post(
        client,
        user.user_id,
        {"type": "threads.add_client_tool_output", "params": {"thread_id": thread_id, "result": 1}},
    )
    assert response.status_code == 400
    assert "ClientToolCallItem" in response.json()["message"]
    assert await services.store.load_thread_items(thread_id, None, 10, "asc", user) == before


async def test_add_structured_input_answers_and_responds(client, services, user) -> None:
    why = StructuredInputFreeform(id="q1", question="Why?")
    question = await thread_with(
        client, services, user, "message", StructuredInputItem, inputs=[why]
    )
    thread_id, store = question.thread_id, services.store

    events = await stream(
        client,
        user.user_id,
        {
            "type": "threads.add_structured_input",
            "params": {
                "thread_id": thread_id,
                "item_id": question.id,
                "input": {"status": "answered", "answers": {"q1": {"values": ["Because"]}}},
            },
        },
    )
    assert "thread.item.replaced" in event_types(events)
    stored = await store.load_item(thread_id, question.id, user)
    assert isinstance(stored, StructuredInputItem) and stored.status == "answered"
    assert stored.inputs[0].answer is not None and stored.inputs[0].answer.values == ["Because"]


async def test_attachments_create_and_delete(client, services, user) -> None:
    response = await post(
        client,
        user.user_id,
        {
            "type": "attachments.create",
            "params": {"name": "notes.txt", "size": 5, "mime_type": "text/plain"},
        },
    )
    assert response.status_code == 200, response.text
    attachment = response.json()
    assert attachment["type"] == "file" and attachment["id"].startswith("atc_")
    assert attachment["upload_descriptor"]["method"] == "POST"
    assert "metadata" not in attachment
    assert (await services.store.load_attachment(attachment["id"], user)).name == "notes.txt"

    other = new_user()
    stolen = await post(
        client,
        other.user_id,
        {"type": "attachments.delete", "params": {"attachment_id": attachment["id"]}},
    )
    assert stolen.status_code == 404
    assert (await services.store.load_attachment(attachment["id"], user)).id == attachment["id"]

    deleted = await post(
        client,
        user.user_id,
        {"type": "attachments.delete", "params": {"attachment_id": attachment["id"]}},
    )
    assert deleted.status_code == 200
    missing = await post(
        client,
        user.user_id,
        {"type": "attachments.delete", "params": {"attachment_id": attachment["id"]}},
    )
    assert missing.status_code == 404


async def test_message_with_attachment_links_it_to_the_thread(client, services, user) -> None:
    store = services.store
    attachment = FileAttachment(id=new_id("attachment"), name="a.txt", mime_type="text/plain")
    await store.save_attachment(attachment, user)

    events = await stream(
        client,
        user.user_id,
        {"type": "threads.create", "params": {"input": user_input("See", [attachment.id])}},
    )
    thread_id = created_thread_id(events)
    assert (await store.load_attachment(attachment.id, user)).thread_id == thread_id
    message = next(e["item"] for e in events if e["type"] == "thread.item.done")
    assert message["attachments"][0]["id"] == attachment.id


async def test_unsupported_requests_are_501(client, user) -> None:
    thread_id = await new_thread(client, user)
    for payload in [
        {"type": "input.transcribe", "params": {"audio_base64": "AAAA", "mime_type": "audio/webm"}},
        {
            "type": "threads.sync_custom_action",
            "params": {"thread_id": thread_id, "action": {"type": "x", "payload": {}}},
        },
    ]:
        response = await post(client, user.user_id, payload)
        assert response.status_code == 501, response.text
        assert response.json()["error"] == "not_implemented"


async def test_user_message_item_round_trips_through_http(client, services, user) -> None:
    thread_id = await new_thread(client, user, "Ünïcode ✓")
    items = await services.store.load_thread_items(thread_id, None, 10, "asc", user)
    assert isinstance(items.data[0], UserMessageItem)
    assert items.data[0].content[0].text == "Ünïcode ✓"


async def test_failure_after_the_first_event_ends_with_an_error_event(
    client, services, user, monkeypatch
) -> None:
    """Once the 200 is out, a failure must end the stream with an error event, not a reset."""
    store = services.store

    async def broken_add(*_: object, **__: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(store, "add_thread_item", broken_add)
    response = await post(client, user.user_id, create_thread_req("Hi"))

    assert response.status_code == 200
    events = sse_events(response)
    assert event_types(events)[0] == "thread.created"
    assert events[-1]["type"] == "error" and events[-1]["allow_retry"] is True
    assert "database went away" not in response.text  # internals are logged, not sent
