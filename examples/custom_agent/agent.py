"""A custom agent: `AGENT_FACTORY=examples.custom_agent.agent:build`.

It starts from the configured agent (instructions, model, built-in tools, `AGENT_CONFIG` if
set), then adds a function tool of its own and a local MCP server (`notes_server.py`, over
stdio), whose `clear_notes` waits for the user's approval. The app connects that server at
startup, keeps it connected and closes it at shutdown, as it does for the servers of the
configuration.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from agents import Agent, RunContextWrapper, function_tool
from agents.mcp import MCPServerStdio

from app.agent.context import AssistantContext
from app.agent.factory import AgentSetup

HERE = Path(__file__).parent
INSTRUCTIONS = (
    "You roll dice and keep the user's notes. Use roll_dice for any roll, the notes tools to "
    "write down, list and forget notes, and the task tools for the user's tasks."
)


@function_tool
async def roll_dice(ctx: RunContextWrapper[AssistantContext], sides: int = 6) -> str:
    """Roll one die.

    Args:
        sides: How many sides the die has (2 to 100).
    """
    sides = min(max(sides, 2), 100)
    roll = secrets.randbelow(sides) + 1
    return f"{ctx.context.request_context.name or 'You'} rolled {roll} on a d{sides}."


# APPROVAL: a tool that acts for the user asks first. The run stops before the call, the thread
# shows an approval widget (the tool, its arguments, Approve / Reject), and the user's click
# resumes it, even after a restart. An MCP server's tools ask with `require_approval` (below); a
# function tool with the Agents SDK's `needs_approval`, as the built-in `delete_task` does:
#
#     @function_tool(needs_approval=True)
#     async def forget_everything(ctx: RunContextWrapper[AssistantContext]) -> str: ...


def build(setup: AgentSetup) -> Agent[AssistantContext]:
    """The agent for every turn (called once, at startup)."""
    agent = setup.default_agent()
    notes = MCPServerStdio(
        {"command": sys.executable, "args": [str(HERE / "notes_server.py")]},
        name="notes",
        cache_tools_list=True,
        client_session_timeout_seconds=10,
        require_approval={"clear_notes": "always"},  # APPROVAL: the user says yes first
    )
    return agent.clone(
        name="Dice and notes",
        instructions=INSTRUCTIONS,
        tools=[*agent.tools, roll_dice],
        mcp_servers=[notes],
    )
