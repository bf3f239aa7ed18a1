"""examples/custom_agent: its factory is loaded by AGENT_FACTORY and runs turns through
POST /chatkit: its own function tool, its own MCP server (one of whose tools asks first), and
the built-in tools it kept."""

from __future__ import annotations

import re

from app.agent.approvals import APPROVE_ACTION
from tests.conftest import make_settings
from tests.helpers.agent import assistant_texts, stored_items
from tests.helpers.apps import running_app
from tests.helpers.chatkit import (
    add_message_req,
    create_thread_req,
    created_thread_id,
    custom_action_req,
    done_items,
    stream,
)

FACTORY = "examples.custom_agent.agent:build"


async def test_the_example_factory_runs_its_tools(postgres_url, user) -> None:
    settings = make_settings(postgres_url, agent_factory=FACTORY)
    async with running_app(settings) as running:
        client = running.client
        ready = (await client.get("/readyz")).json()
        assert ready["mcp_servers"] == {"notes": "connected"}

        events = await stream(client, user.user_id, create_thread_req('/roll_dice {"sides": 20}'))
        thread_id = created_thread_id(events)
        for message in ('/add_note {"text": "Buy milk"}', "/list_notes"):
            await stream(client, user.user_id, add_message_req(thread_id, message))

        roll, noted, listed = assistant_texts(
            await stored_items(running.services, user.user_id, thread_id)
        )
        rolled = re.fullmatch(r"The tool answered: You rolled (\d+) on a d20\.", roll)
        assert rolled and 1 <= int(rolled[1]) <= 20, roll
        assert noted == "The tool answered: Noted (1 notes)."
        assert listed == "The tool answered: Buy milk"
        call = running.fake_model.script.calls[-1]
        assert call.instructions.startswith("You roll dice and keep the user's notes.")
        assert {"roll_dice", "add_note", "add_task", "switch_theme"} <= set(call.tool_names)

        # clear_notes asks first: the turn stops on an approval card; Approve runs the tool.
        asked = await stream(client, user.user_id, add_message_req(thread_id, "/clear_notes"))
        [card] = done_items(asked, "widget")
        approve = card["widget"]["children"][-1]["children"][0]["onClickAction"]
        assert approve["type"] == APPROVE_ACTION
        request = custom_action_req(thread_id, card["id"], approve["type"], approve["payload"])
        await stream(client, user.user_id, request)
        texts = assistant_texts(await stored_items(running.services, user.user_id, thread_id))
        assert texts[-1] == "The tool answered: Forgot 1 notes."
