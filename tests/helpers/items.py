"""One instance of every thread item type the SDK defines, with the awkward values filled in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from chatkit.store import StoreItemType
from chatkit.types import (
    Annotation,
    AssistantMessageContent,
    AssistantMessageItem,
    ClientToolCallItem,
    CustomSummary,
    CustomTask,
    DurationSummary,
    EndOfTurnItem,
    EntitySource,
    FileAttachment,
    FileSource,
    FileTask,
    GeneratedImage,
    GeneratedImageItem,
    HiddenContextItem,
    ImageAttachment,
    ImageTask,
    InferenceOptions,
    SDKHiddenContextItem,
    SearchTask,
    StructuredInputFreeform,
    StructuredInputItem,
    StructuredInputMultipleChoice,
    StructuredInputMultipleChoiceOption,
    TaskItem,
    ThoughtTask,
    ThreadItem,
    ToolChoice,
    URLSource,
    UserMessageItem,
    UserMessageTagContent,
    UserMessageTextContent,
    WidgetItem,
    Workflow,
    WorkflowItem,
)
from chatkit.widgets import Button, Card, Text

from app.store.store import new_id

BASE_TIME = datetime(2026, 1, 2, 3, 4, 5, 123456)  # naive, with microseconds, as the SDK makes


def every_item_type(thread_id: str) -> list[ThreadItem]:
    """Items one second apart; the last one is timezone-aware to prove aware stays aware."""

    def at(seconds: int) -> datetime:
        return BASE_TIME + timedelta(seconds=seconds)

    def head(kind: StoreItemType, seconds: int) -> dict[str, Any]:
        """What every item has: an id of its kind, a time, the thread."""
        return {"id": new_id(kind), "created_at": at(seconds), "thread_id": thread_id}

    items: list[ThreadItem] = [
        UserMessageItem(
            **head("message", 0),
            content=[
                UserMessageTextContent(text="Hello ünïcode ✓"),
                UserMessageTagContent(id="t1", text="@doc", data={"k": [1, 2]}, group=None),
            ],
            attachments=[
                FileAttachment(id=new_id("attachment"), name="a.pdf", mime_type="application/pdf"),
                ImageAttachment(
                    id=new_id("attachment"),
                    name="b.png",
                    mime_type="image/png",
                    preview_url="https://example.com/b.png",
                    metadata={"k": "v"},
                ),
            ],
            quoted_text="quoted",
            inference_options=InferenceOptions(tool_choice=ToolChoice(id="t"), model="m"),
        ),
        AssistantMessageItem(
            **head("message", 1),
            content=[
                AssistantMessageContent(
                    text="Answer",
                    annotations=[
                        Annotation(source=URLSource(title="u", url="https://e.com"), index=3),
                        Annotation(source=FileSource(title="f", filename="f.txt")),
                        Annotation(source=EntitySource(title="e", id="ent", data={"x": None})),
                    ],
                )
            ],
        ),
        ClientToolCallItem(
            **head("tool_call", 2),
            call_id="call_1",
            name="get_location",
            arguments={"precise": True, "nested": {"a": [1.5, None]}},
            output=None,
        ),
        WidgetItem(
            **head("message", 3),
            widget=Card(children=[Text(value="Tasks", id="title"), Button(label="Go")]),
            copy_text="copy",
        ),
        GeneratedImageItem(
            **head("message", 4),
            image=GeneratedImage(id="img", url="https://e.com/i.png"),
        ),
        StructuredInputItem(
            **head("message", 5),
            inputs=[
                StructuredInputMultipleChoice(
                    id="q1",
                    question="Pick",
                    options=[StructuredInputMultipleChoiceOption(value="a")],
                ),
                StructuredInputFreeform(id="q2", question="Why?", description=None),
            ],
        ),
        WorkflowItem(
            **head("workflow", 6),
            workflow=Workflow(
                type="custom",
                tasks=[
                    CustomTask(title="c", content="x", status_indicator="loading"),
                    SearchTask(queries=["q"], sources=[URLSource(title="s", url="https://s")]),
                    ThoughtTask(content="thinking"),
                    FileTask(sources=[FileSource(title="f", filename="f")]),
                    ImageTask(title="i"),
                ],
                summary=CustomSummary(title="Done"),
            ),
        ),
        WorkflowItem(
            **head("workflow", 7),
            workflow=Workflow(type="reasoning", tasks=[], summary=DurationSummary(duration=3)),
        ),
        TaskItem(**head("task", 8), task=CustomTask(title="t")),
        HiddenContextItem(**head("message", 9), content={"any": ["json", 1]}),
        SDKHiddenContextItem(**head("sdk_hidden_context", 10), content="hidden"),
        EndOfTurnItem(
            id=new_id("message"), created_at=at(11).replace(tzinfo=UTC), thread_id=thread_id
        ),
    ]
    return items
