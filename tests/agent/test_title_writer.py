"""Titles by default: the first words of the message, and no request to the model (model titles
are opted in with `[titles] writer = "model"`, or by naming `[titles] model`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.helpers.agent import stored_thread
from tests.helpers.apps import running_app
from tests.helpers.chatkit import create_thread_req, created_thread_id, stream
from tests.helpers.fake_openai import FakeOpenAI


@pytest.mark.parametrize("config", [None, '[titles]\nwriter = "words"'])
async def test_titles_by_words_ask_the_model_nothing(
    tmp_path: Path, postgres_url, user, config: str | None
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(config or "")
    async with FakeOpenAI(tokens=3, title="Never asked for") as fake:
        settings = make_settings(
            postgres_url,
            agent_config=path,
            model_provider="openai",
            openai_base_url=fake.base_url,
            openai_api_key="sk-test",
            openai_max_retries=0,
        )
        async with running_app(settings) as running:
            events = await stream(
                running.client, user.user_id, create_thread_req("Plan my week of team offsites")
            )
            thread = await stored_thread(running.services, user.user_id, created_thread_id(events))
    assert thread.title == "Plan my week of team offsites"
    assert [e["thread"]["title"] for e in events if e["type"] == "thread.updated"] == [thread.title]
    assert len(fake.received) == 1 and fake.received[0].body.get("stream")  # the answer only
