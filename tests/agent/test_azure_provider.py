"""MODEL_PROVIDER=azure: `AsyncAzureOpenAI` against the local model server acting as Azure.

What Azure's client sends, checked on the wire for both APIs: the deployment (`CHATKIT_MODEL`)
in the path for Chat Completions and in the body for Responses, `api-version` in the query, and
the key in an `api-key` header (never a bearer token).
"""

from __future__ import annotations

from chatkit.types import AssistantMessageItem, UserMessageItem, WidgetItem

from tests.conftest import make_settings
from tests.helpers.agent import MODEL_TITLES, assistant_texts, stored_items, stored_thread
from tests.helpers.apps import running_app
from tests.helpers.chatkit import create_thread_req, created_thread_id, error_events, stream
from tests.helpers.fake_openai import FakeOpenAI, FakeReply, last_tool_output

API_VERSION = "2025-04-01-preview"
PATHS = {
    "responses": "/openai/responses",
    "chat_completions": "/openai/deployments/chat-deployment/chat/completions",
}


async def test_a_turn_with_a_tool_on_azure(database_url, user, model_api):
    async with FakeOpenAI(title="Milk on the list") as fake:
        settings = make_settings(
            database_url,
            model_provider="azure",
            model_api=model_api,
            azure_openai_endpoint=fake.root_url,
            azure_openai_api_key="azure-secret-key",
            openai_api_version=API_VERSION,
            chatkit_model="chat-deployment",
            openai_max_retries=0,
            agent_config=MODEL_TITLES,  # the title request is shaped as Azure's client sends it
        )
        fake.script.extend([FakeReply.call("add_task", title="Buy milk"), FakeReply("Added.")])
        async with running_app(settings) as running:
            events = await stream(
                running.client, user.user_id, create_thread_req("Remind me: milk")
            )

    assert error_events(events) == []
    thread_id = created_thread_id(events)
    items = await stored_items(running.services, user.user_id, thread_id)
    assert [type(item) for item in items] == [UserMessageItem, WidgetItem, AssistantMessageItem]
    assert assistant_texts(items) == ["Added."]
    assert [t.title for t in await running.services.tasks.list(user.user_id)] == ["Buy milk"]
    assert (
        await stored_thread(running.services, user.user_id, thread_id)
    ).title == "Milk on the list"
    # Two streamed calls around the tool, and the title: all shaped as Azure's client sends them.
    assert len(fake.streamed()) == 2 and len(fake.received) == 3
    for request in fake.received:
        assert request.path == PATHS[model_api]
        assert request.query == {"api-version": API_VERSION}
        assert request.headers["api-key"] == "azure-secret-key"
        assert "authorization" not in request.headers
        assert request.body["model"] == "chat-deployment"
    assert "Buy milk" in last_tool_output(fake.streamed()[-1].body)
