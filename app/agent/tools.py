"""The agent's tools: one typed function each, listed in `TOOLS`.

A tool's name, description and argument schema come from its signature and docstring. The first
argument, `Ctx` (`RunContextWrapper[AssistantContext]`), is not shown to the model: it carries the
caller's `RequestContext`, the thread, the store and the task list. A tool returns text (JSON for
data). An exception becomes a message to the model: `explain_error` decides how much it says.

To add a tool: write an `async def` decorated with `@function_tool`, here or in a module of its
own (its helpers, `Ctx`, `progress`, `to_json` and `explain_error`, are in `app/agent/context.py`),
and add it to `TOOLS`.
"""

from __future__ import annotations

from typing import Any, Literal

from agents import FunctionTool, function_tool
from chatkit.agents import ClientToolCall

from app.agent.context import Ctx, explain_error, progress, to_json
from app.agent.widgets import task_list_text, task_list_widget
from app.store.tasks import Task


async def _show_tasks(ctx: Ctx, highlight: str | None = None) -> list[Task]:
    """Stream the caller's task list as a widget, and return it."""
    tasks = await ctx.context.tasks.list(ctx.context.request_context.user_id)
    await ctx.context.stream_widget(
        task_list_widget(tasks, highlight=highlight), copy_text=task_list_text(tasks)
    )
    return tasks


def _summary(task: Task) -> dict[str, Any]:
    return {"id": task.id, "title": task.title, "notes": task.notes, "done": task.done}


@function_tool(failure_error_function=explain_error)
async def add_task(ctx: Ctx, title: str, notes: str | None = None) -> str:
    """Add a task to the user's task list and show the list.

    Args:
        title: What needs to be done, in a few words.
        notes: Optional details.
    """
    await progress(ctx, "Adding a task…")
    task = await ctx.context.tasks.add(ctx.context.request_context.user_id, title, notes)
    await _show_tasks(ctx, highlight=task.id)
    return to_json({"added": _summary(task)})


@function_tool(failure_error_function=explain_error)
async def list_tasks(ctx: Ctx) -> str:
    """Show the user's task list (it is displayed to the user as a widget)."""
    await progress(ctx, "Loading tasks…")
    tasks = await _show_tasks(ctx)
    return to_json({"tasks": [_summary(task) for task in tasks]})


@function_tool(failure_error_function=explain_error)
async def complete_task(ctx: Ctx, task_id: str) -> str:
    """Mark a task as done and show the list.

    Args:
        task_id: The task's id, as returned by list_tasks or add_task.
    """
    await progress(ctx, "Completing a task…")
    user_id = ctx.context.request_context.user_id
    task = await ctx.context.tasks.update(user_id, task_id, done=True)
    await _show_tasks(ctx, highlight=task.id)
    return to_json({"completed": _summary(task)})


@function_tool(failure_error_function=explain_error)
async def update_task(
    ctx: Ctx,
    task_id: str,
    title: str | None = None,
    notes: str | None = None,
    done: bool | None = None,
) -> str:
    """Change a task's title, notes or done state (null leaves a field unchanged).

    Args:
        task_id: The task's id, as returned by list_tasks or add_task.
        title: The new title.
        notes: The new notes.
        done: Whether the task is done.
    """
    await progress(ctx, "Updating a task…")
    user_id = ctx.context.request_context.user_id
    task = await ctx.context.tasks.update(user_id, task_id, title=title, notes=notes, done=done)
    await _show_tasks(ctx, highlight=task.id)
    return to_json({"updated": _summary(task)})


@function_tool(failure_error_function=explain_error, needs_approval=True)
async def delete_task(ctx: Ctx, task_id: str) -> str:
    """Delete a task from the user's list and show the list (the user approves it first).

    Args:
        task_id: The task's id, as returned by list_tasks or add_task.
    """
    await progress(ctx, "Deleting a task…")
    task = await ctx.context.tasks.delete(ctx.context.request_context.user_id, task_id)
    await _show_tasks(ctx)
    return to_json({"deleted": _summary(task)})


@function_tool(failure_error_function=explain_error)
async def get_current_user(ctx: Ctx) -> str:
    """Who the user is: id, name, email, plan tier and locale, as the app authenticated them."""
    caller = ctx.context.request_context
    return to_json(
        {
            "user_id": caller.user_id,
            "name": caller.name,
            "email": caller.email,
            "tier": caller.tier,
            "locale": caller.locale,
        }
    )


@function_tool(failure_error_function=explain_error)
async def switch_theme(ctx: Ctx, theme: Literal["light", "dark"]) -> str:
    """Switch the chat's color theme. The user's browser applies it.

    Args:
        theme: The theme to switch to.
    """
    # A client tool: the run stops here, the frontend handles the call (ChatKit's onClientTool)
    # and sends its result with threads.add_client_tool_output, which resumes the agent.
    ctx.context.client_tool_call = ClientToolCall(name="switch_theme", arguments={"theme": theme})
    return f"Asked the browser to switch to the {theme} theme."


TOOLS: tuple[FunctionTool, ...] = (
    add_task,
    list_tasks,
    complete_task,
    update_task,
    delete_task,
    get_current_user,
    switch_theme,
)
"""Every tool the default agent can call."""

CLIENT_TOOLS: tuple[str, ...] = (switch_theme.name,)
"""Tools the frontend runs: the agent stops after calling one and waits for its output."""

TOOL_GROUPS: dict[str, tuple[FunctionTool, ...]] = {
    "tasks": (add_task, list_tasks, complete_task, update_task, delete_task),
    "who_am_i": (get_current_user,),
    "client": (switch_theme,),
}
"""The `[tools]` switches of agent.toml and the tools each turns on or off; a tool of `TOOLS` in
no group is always on."""
