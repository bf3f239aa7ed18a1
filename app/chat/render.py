"""What the terminal client shows: the streamed answer, widgets as text, tool calls and errors.

In a terminal the answer streams in place as Markdown (rich's `Live`); anywhere else (a pipe, a
file, a test) it is written as plain text as it arrives. The answer and widgets go to `out`;
everything about the answer (progress, titles, tool calls, errors) goes to `err`, so that
`python -m app.chat --message ... > answer.md` keeps just the answer.
"""

from __future__ import annotations

import json
from datetime import datetime
from types import TracebackType
from typing import Any

from chatkit.types import (
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    Attachment,
    ClientEffectEvent,
    ClientToolCallItem,
    ErrorEvent,
    NoticeEvent,
    Page,
    ProgressUpdateEvent,
    TaskItem,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    ThreadUpdatedEvent,
    UserMessageItem,
    WidgetItem,
    WorkflowItem,
)
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.text import Text

WIDGET_TEXT_FIELDS = {
    "Title": "value",
    "Text": "value",
    "Markdown": "value",
    "Caption": "value",
    "Label": "value",
    "Badge": "label",
}
"""The components whose text a widget is read by, and the field holding it."""
NOTICE_STYLES = {"info": "cyan", "warning": "yellow", "danger": "red"}


def widget_text(item: WidgetItem) -> str:
    """A widget as text: its `copy_text` when the server gave one, else the text in its tree."""
    if item.copy_text:
        return item.copy_text
    return "\n".join(_widget_lines(item.widget.model_dump(mode="json")))


def _widget_lines(node: dict[str, Any]) -> list[str]:
    field = WIDGET_TEXT_FIELDS.get(str(node.get("type")))
    value = node.get(field) if field else None
    lines = [value] if isinstance(value, str) and value else []
    children = node.get("children") or []
    for child in [children] if isinstance(children, dict) else children:
        if isinstance(child, dict):
            lines += _widget_lines(child)
    if node.get("type") == "Row" and lines:  # a row reads as one line
        return [" · ".join(lines)]
    return lines


def assistant_text(item: AssistantMessageItem) -> str:
    return "\n\n".join(part.text for part in item.content)


def user_text(item: UserMessageItem) -> str:
    return " ".join(part.text for part in item.content)


def error_text(event: ErrorEvent, retry_hint: str = "you can retry") -> str:
    """An error event for a person: its message, and whether trying again can help."""
    message = event.message or f"Something went wrong ({event.code})."
    advice = retry_hint if event.allow_retry else "retrying will not help"
    return f"Error: {message} ({advice})"


class TurnRenderer:
    """Shows one turn's events as they arrive (a `TurnView`); use it as a context manager."""

    def __init__(
        self,
        out: Console,
        err: Console,
        *,
        live: bool | None = None,
        retry_hint: str = "you can retry",
    ) -> None:
        self.out = out
        self.err = err
        self.live = out.is_terminal if live is None else live
        self.retry_hint = retry_hint
        self._parts: dict[int, str] = {}
        self._answer: Live | None = None
        self._streamed = False

    def __enter__(self) -> TurnRenderer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._end_answer(None)

    def show(self, event: ThreadStreamEvent) -> None:
        match event:
            case ThreadItemAddedEvent(item=AssistantMessageItem()):
                self._end_answer(None)
            case ThreadItemUpdatedEvent(update=AssistantMessageContentPartTextDelta() as update):
                self._delta(update.content_index, update.delta)
            case ThreadItemDoneEvent(item=AssistantMessageItem() as item):
                self._end_answer(item)
            case (
                ThreadItemDoneEvent(item=WidgetItem() as item)
                | ThreadItemReplacedEvent(item=WidgetItem() as item)
            ):
                self.widget(item)
            case ThreadItemDoneEvent(item=WorkflowItem() | TaskItem() as item):
                for line in task_lines(item):
                    self.err.print(Text(f"• {line}", style="dim"))
            case ProgressUpdateEvent():
                self.err.print(Text(f"… {event.text}", style="dim"))
            case ThreadUpdatedEvent(thread=thread) if thread.title:
                self.err.print(Text(f"Title: {thread.title}", style="dim"))
            case NoticeEvent():
                title = f"{event.title}: " if event.title else ""
                style = NOTICE_STYLES[event.level]
                self.err.print(Text(f"{title}{event.message}", style=style))
            case ClientEffectEvent():
                self.err.print(Text(f"(effect {event.name} {json.dumps(event.data)})", style="dim"))
            case ErrorEvent():
                self._end_answer(None)
                self.err.print(Text(error_text(event, self.retry_hint), style="bold red"))

    def client_tool(self, call: ClientToolCallItem, result: Any) -> None:
        self._end_answer(None)
        asked, answered = json.dumps(call.arguments), json.dumps(result)
        self.err.print(
            Text(f"⚙ The assistant called {call.name} {asked} here: answered {answered}")
        )

    def widget(self, item: WidgetItem) -> None:
        self._end_answer(None)
        text = widget_text(item)
        if self.live:
            self.out.print(Panel(Text(text), expand=False))
        else:
            self.out.out(text, highlight=False)

    def _delta(self, index: int, delta: str) -> None:
        new_part = index not in self._parts and bool(self._parts)
        self._parts[index] = self._parts.get(index, "") + delta
        if self.live:
            if self._answer is None:
                self._answer = Live(
                    console=self.out, refresh_per_second=12, vertical_overflow="visible"
                )
                self._answer.start()
            self._answer.update(Markdown("\n\n".join(self._parts[i] for i in sorted(self._parts))))
        else:
            self.out.out("\n\n" if new_part else "", delta, sep="", end="", highlight=False)
            self._streamed = True

    def _end_answer(self, item: AssistantMessageItem | None) -> None:
        """Close the answer being streamed; `item`, the finished message, has the final text."""
        text = assistant_text(item) if item else None
        if self._answer is not None:
            if text is not None:
                self._answer.update(Markdown(text), refresh=True)
            self._answer.stop()
        elif self.live and text:
            self.out.print(Markdown(text))
        elif self._streamed:
            self.out.out("", highlight=False)  # end the streamed line
        elif text:
            self.out.out(text, highlight=False)
        self._answer = None
        self._parts = {}
        self._streamed = False


def task_lines(item: WorkflowItem | TaskItem) -> list[str]:
    tasks = item.workflow.tasks if isinstance(item, WorkflowItem) else [item.task]
    return [title for task in tasks if (title := getattr(task, "title", None))]


def show_history(out: Console, items: list[ThreadItem]) -> None:
    """A thread's items as a transcript (what `/switch` prints)."""
    for item in items:
        match item:
            case UserMessageItem():
                files = "".join(f" [{attachment.name}]" for attachment in item.attachments)
                out.print(Text(f"you: {user_text(item)}{files}", style="bold"))
            case AssistantMessageItem():
                out.print(Markdown(assistant_text(item)))
            case WidgetItem():
                out.print(Panel(Text(widget_text(item)), expand=False))
            case ClientToolCallItem():
                call = f"⚙ {item.name} {json.dumps(item.arguments)} → {json.dumps(item.output)}"
                out.print(Text(call, style="dim"))
            case WorkflowItem() | TaskItem():
                for line in task_lines(item):
                    out.print(Text(f"• {line}", style="dim"))


def show_threads(out: Console, page: Page[ThreadMetadata], current: str | None) -> None:
    """A numbered list of threads (numbers for `/switch N`); the current one is starred."""
    if not page.data:
        out.print("No threads yet: send a message to start one.")
        return
    for number, thread in enumerate(page.data, start=1):
        mark = "*" if thread.id == current else " "
        title = thread.title or "(untitled)"
        out.print(Text(f"{number:>3}{mark} {title} · {_when(thread.created_at)}"), soft_wrap=True)
        out.print(Text(f"     {thread.id}", style="dim"), soft_wrap=True)
    if page.has_more:
        out.print(Text("(older threads not shown: /threads N lists more)", style="dim"))


def show_attached(err: Console, attachment: Attachment) -> None:
    err.print(
        Text(f"Attached {attachment.name} ({attachment.id}) to your next message.", style="dim")
    )


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")
