"""What a tool sees: the SDK's `AgentContext` (thread, store, caller) plus our task list, and
the helpers every tool uses."""

from __future__ import annotations

import json
from typing import Annotated, Any

from agents import RunContextWrapper, default_tool_error_function
from chatkit.agents import AgentContext
from chatkit.types import ProgressUpdateEvent
from pydantic import SkipValidation

from app.context import RequestContext
from app.store.tasks import TaskNotFoundError, TaskStore


class AssistantContext(AgentContext[RequestContext]):
    """`request_context` is the caller; `tasks` is the caller-scoped task list's store."""

    tasks: Annotated[TaskStore, SkipValidation]


Ctx = RunContextWrapper[AssistantContext]
"""A tool's first argument, which the model never sees."""


TOOL_FAILED = "chatkit_tool_failed"
"""The mark `note_tool_failure` leaves on a tool call's context."""


def note_tool_failure(ctx: RunContextWrapper[Any]) -> None:
    """Mark the tool call whose context this is as failed, for the tool-call metrics.

    The Agents SDK turns a tool's exception into its output (the failure function's message), so
    the run's hooks see an answer either way: the failure functions say which it was.
    """
    setattr(ctx, TOOL_FAILED, True)


def tool_failed(ctx: RunContextWrapper[Any]) -> bool:
    return bool(getattr(ctx, TOOL_FAILED, False))


def explain_error(ctx: RunContextWrapper[Any], error: Exception) -> str:
    """Tell the model about mistakes it can fix (an unknown task id); keep other errors vague."""
    note_tool_failure(ctx)
    if isinstance(error, TaskNotFoundError):
        return f"Error: {error}"
    return default_tool_error_function(ctx, error)


async def progress(ctx: Ctx, text: str) -> None:
    """Tell the UI what the tool is doing while it runs."""
    await ctx.context.stream(ProgressUpdateEvent(text=text, icon="check-circle"))


def to_json(value: Any) -> str:
    """Tool results reach the model as text: JSON, not Python's repr."""
    return json.dumps(value, default=str)
