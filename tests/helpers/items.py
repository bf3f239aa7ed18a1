"""One instance of every thread item type the SDK defines, with the awkward values filled in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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

    common = {"thread_id": thread_id}
    items: list[ThreadItem] = [
        UserMessageItem(
            id=new_id("message"),
            created_at=at(0),
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
            **common,
        ),
        AssistantMessageItem(
            id=new_id("message"),
            created_at=at(1),
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
            **common,
        ),
        ClientToolCallItem(
            id=new_id("tool_call"),
            created_at=at(2),
            call_id="call_1",
            name="get_location",
            arguments={"precise": True, "nested": {"a": [1.5, None]}},
            output=None,
            **common,
        ),
        WidgetItem(
            id=new_id("message"),
            created_at=at(3),
            widget=Card(children=[Text(value="Tasks", id="title"), Button(label="Go")]),
            copy_text="copy",
            **common,
        ),
        GeneratedImageItem(
            id=new_id("message"),
            created_at=at(4),
            image=GeneratedImage(id="img", url="https://e.com/i.png"),
            **common,
        ),
        StructuredInputItem(
            id=new_id("message"),
            created_at=at(5),
            inputs=[
                StructuredInputMultipleChoice(
                    id="q1",
                    question="Pick",
                    options=[StructuredInputMultipleChoiceOption(value="a")],
                ),
                StructuredInputFreeform(id="q2", question="Why?", description=None),
            ],
            **common,
        ),
        WorkflowItem(
            id=new_id("workflow"),
            created_at=at(6),
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
            **common,
        ),
        WorkflowItem(
            id=new_id("workflow"),
            created_at=at(7),
            workflow=Workflow(type="reasoning", tasks=[], summary=DurationSummary(duration=3)),
            **common,
        ),
        TaskItem(id=new_id("task"), created_at=at(8), task=CustomTask(title="t"), **common),
        HiddenContextItem(
            id=new_id("message"), created_at=at(9), content={"any": ["json", 1]}, **common
        ),
        SDKHiddenContextItem(
            id=new_id("sdk_hidden_context"), created_at=at(10), content="hidden", **common
        ),
        EndOfTurnItem(id=new_id("message"), created_at=(at(11)).replace(tzinfo=UTC), **common),
    ]
    return items
