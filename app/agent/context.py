"""What a tool sees: the SDK's `AgentContext` (thread, store, caller) plus our task list."""

from __future__ import annotations

from typing import Annotated

from chatkit.agents import AgentContext
from pydantic import SkipValidation

from app.context import RequestContext
from app.store.tasks import TaskStore


class AssistantContext(AgentContext[RequestContext]):
    """`request_context` is the caller; `tasks` is the caller-scoped task list's store."""

    tasks: Annotated[TaskStore, SkipValidation]
