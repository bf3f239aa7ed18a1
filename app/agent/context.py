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


def explain_error(ctx: RunContextWrapper[Any], error: Exception) -> str:
    """Tell the model about mistakes it can fix (an unknown task id); keep other errors vague."""
    if isinstance(error, TaskNotFoundError):
        return f"Error: {error}"
    return default_tool_error_function(ctx, error)


async def progress(ctx: Ctx, text: str) -> None:
    """Tell the UI what the tool is doing while it runs."""
    await ctx.context.stream(ProgressUpdateEvent(text=text, icon="check-circle"))


def to_json(value: Any) -> str:
    """Tool results reach the model as text: JSON, not Python's repr."""
    return json.dumps(value, default=str)
