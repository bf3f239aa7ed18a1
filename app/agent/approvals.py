"""Tools that ask first: a run stopped on tool calls that need approval waits for the user.

Function tools marked with the Agents SDK's `needs_approval`, and MCP tools their server's
`require_approval` names, stop the run before they run (`result.interruptions`). Then:

- `pause` stores the run's state (`RunState.to_json()`) and the pending calls in the database
  (`app/store/approvals.py`) and shows an approval widget: each tool's name, its arguments, and
  Approve / Reject buttons whose actions carry the approval's id;
- `decide`, the buttons' action, records the decision once (under a row lock), applies it to the
  restored state, re-renders the widget with the decision, and resumes the run with
  `Runner.run_streamed`, streaming the rest of the answer into the same thread. A rejected call
  reaches the model as a tool result saying so.

The state is in the database, so the click may come after a restart, or reach another replica.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, cast

from agents import RunContextWrapper, RunResultStreaming, RunState, UserError
from chatkit.actions import Action
from chatkit.agents import stream_agent_response
from chatkit.errors import CustomStreamError
from chatkit.store import NotFoundError
from chatkit.types import (
    ProgressUpdateEvent,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadStreamEvent,
    WidgetItem,
)
from chatkit.widgets import DynamicWidgetRoot, WidgetRoot
from pydantic import BaseModel, ValidationError

from app.agent.agent import Assistant
from app.agent.context import AssistantContext
from app.agent.errors import stream_error_for
from app.agent.streaming import EndOnError, ItemIds
from app.agent.usage import UsageRecorder
from app.agent.widgets import WidgetAction
from app.context import RequestContext
from app.errors import BadRequest
from app.store.approvals import (
    APPROVAL_ID_PREFIX,
    Approval,
    ApprovalDecidedError,
    ApprovalExpiredError,
    ApprovalNotFoundError,
    ApprovalStore,
    Decision,
    PendingCall,
)
from app.store.db import has_id_shape

logger = logging.getLogger(__name__)

APPROVE_ACTION = "approval.approve"
REJECT_ACTION = "approval.reject"
APPROVAL_ACTIONS = frozenset({APPROVE_ACTION, REJECT_ACTION})
REJECTED = "The user rejected this tool call, so it was not run. Do not call it again unless asked."
"""What the model reads as a rejected call's result."""
MAX_ARGUMENT_CHARS = 500
"""An argument's value is cut to this many characters in the widget."""


class ToolsUnavailableError(Exception):
    """A waiting call's tool is not there now (its MCP server is down): decide nothing yet."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


class ApprovalPayload(BaseModel):
    """The payload of both buttons."""

    approval_id: str


def readable_arguments(arguments: str) -> list[tuple[str, str]]:
    """A call's JSON arguments as (name, value) lines; anything but an object as one line."""
    try:
        parsed: Any = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        return [("arguments", _cut(arguments))]
    if not isinstance(parsed, dict):
        return [("arguments", _cut(json.dumps(parsed)))]
    return [
        (str(key), _cut(value if isinstance(value, str) else json.dumps(value)))
        for key, value in parsed.items()
    ]


def _cut(text: str) -> str:
    return text if len(text) <= MAX_ARGUMENT_CHARS else text[: MAX_ARGUMENT_CHARS - 1] + "…"


def _call_rows(call: PendingCall) -> list[dict[str, Any]]:
    lines = readable_arguments(call.arguments)
    return [
        {"type": "Text", "value": call.name, "weight": "semibold"},
        *(
            {"type": "Text", "value": f"{name}: {value}", "size": "sm", "color": "secondary"}
            for name, value in lines
        ),
    ]


STATUS_BADGES = {
    "pending": ("Waiting for you", "warning"),
    "approved": ("Approved", "success"),
    "rejected": ("Rejected", "danger"),
}
STATUS_TEXTS = {
    "pending": "Waiting for your approval",
    "approved": "Approved",
    "rejected": "Rejected",
}


def approval_widget(approval: Approval) -> WidgetRoot:
    """A card naming each waiting call with its arguments; Approve / Reject while pending."""
    label, color = STATUS_BADGES[approval.status]
    payload = {"approval_id": approval.id}
    buttons: list[dict[str, Any]] = []
    if approval.status == "pending":
        buttons = [
            {"type": "Divider"},
            {
                "type": "Row",
                "gap": 2,
                "children": [
                    {
                        "type": "Button",
                        "label": "Approve",
                        "color": "success",
                        "onClickAction": {"type": APPROVE_ACTION, "payload": payload},
                    },
                    {
                        "type": "Button",
                        "label": "Reject",
                        "variant": "outline",
                        "color": "danger",
                        "onClickAction": {"type": REJECT_ACTION, "payload": payload},
                    },
                ],
            },
        ]
    calls = [row for call in approval.calls for row in _call_rows(call)]
    return DynamicWidgetRoot.model_validate(
        {
            "type": "Card",
            "size": "md",
            "children": [
                {
                    "type": "Row",
                    "children": [
                        {"type": "Title", "value": "Approval needed", "size": "sm"},
                        {"type": "Spacer"},
                        {"type": "Badge", "label": label, "color": color},
                    ],
                },
                {"type": "Divider"},
                {"type": "Col", "gap": 1, "children": calls},
                *buttons,
            ],
        }
    )


def approval_text(approval: Approval) -> str:
    """The widget as plain text: its copy text."""
    calls = "; ".join(f"{call.name} {call.arguments}" for call in approval.calls)
    return f"{STATUS_TEXTS[approval.status]}: {calls}"


class ApprovalFlow:
    """Pauses runs on calls that need approval, and resumes them on the user's decision."""

    def __init__(
        self,
        approvals: ApprovalStore,
        assistant: Assistant,
        *,
        max_age: timedelta,
        usage: UsageRecorder,
    ):
        self.approvals = approvals
        self.assistant = assistant
        self.max_age = max_age
        self.usage = usage
        """A resumed run's tokens count like a turn's."""

    async def pause(
        self, result: RunResultStreaming, context: AssistantContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        """Store the stopped run and show its approval widget."""
        calls = [
            PendingCall(item.call_id or "", item.name or "tool", item.arguments or "{}")
            for item in result.interruptions
        ]
        state = json.dumps(result.to_state().to_json(context_serializer=lambda _: {}))
        thread, caller = context.thread, context.request_context
        item_id = context.store.generate_item_id("message", thread, caller)
        approval = await self.approvals.add(
            ApprovalStore.new_id(), caller.user_id, thread.id, item_id, calls, state
        )
        logger.info(
            "Run in thread %s waits for approval %s of %s",
            thread.id,
            approval.id,
            ", ".join(call.name for call in calls),
        )
        yield ThreadItemDoneEvent(
            item=WidgetItem(
                id=item_id,
                thread_id=thread.id,
                created_at=datetime.now(),
                widget=approval_widget(approval),
                copy_text=approval_text(approval),
            )
        )

    async def check(self, thread_id: str, action: Action[str, Any], caller: RequestContext) -> None:
        """Before the stream starts: an approval that is not the caller's (in this thread) is
        a 404, as another user's thread is."""
        if action.type not in APPROVAL_ACTIONS:
            return
        approval_id = _approval_id(action)
        try:
            await self.approvals.get(caller.user_id, thread_id, approval_id)
        except ApprovalNotFoundError:
            raise NotFoundError("Approval not found") from None

    async def decide(
        self, action: Action[str, Any], sender: WidgetItem | None, context: AssistantContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        """The Approve and Reject buttons: decide once, show it, and resume the run."""
        caller, thread = context.request_context, context.thread
        decision: Decision = "approved" if action.type == APPROVE_ACTION else "rejected"
        agent = self.assistant.agent_for(caller)
        if agent.model is None:  # decide nothing that cannot go on
            raise CustomStreamError(self.assistant.not_configured, allow_retry=False)

        async def restore(approval: Approval) -> RunState[Any, Any]:
            state = await RunState.from_string(
                agent, approval.state, context_deserializer=lambda _: context
            )
            pending = state.get_interruptions()
            tools = await agent.get_all_tools(RunContextWrapper(context))
            available = {getattr(tool, "name", None) for tool in tools}
            missing = sorted({item.name or "" for item in pending} - available)
            if missing:
                raise ToolsUnavailableError(missing)
            for item in pending:
                if decision == "approved":
                    state.approve(item)
                else:
                    state.reject(item, rejection_message=REJECTED)
            return state

        try:
            approval, state = await self.approvals.decide(
                caller.user_id,
                thread.id,
                _approval_id(action),
                decision,
                max_age=self.max_age,
                apply=restore,
            )
        except ApprovalNotFoundError as exc:
            raise CustomStreamError("That approval no longer exists.", allow_retry=False) from exc
        except ApprovalDecidedError as exc:
            raise CustomStreamError(
                f"This request was already {exc.status}; nothing changed.", allow_retry=False
            ) from exc
        except ApprovalExpiredError as exc:
            raise CustomStreamError(
                "This request waited too long for approval and expired; nothing was run. "
                "Ask the assistant again.",
                allow_retry=False,
            ) from exc
        except ToolsUnavailableError as exc:
            raise CustomStreamError(
                f"{' and '.join(exc.names)} cannot be reached right now; nothing was run and "
                "the request still waits for you: try again shortly.",
                allow_retry=False,
            ) from exc
        except UserError as exc:
            # The agent changed since the pause (its tools, an MCP server's tool list).
            logger.warning("Approval in thread %s cannot resume: %s", thread.id, exc)
            raise CustomStreamError(
                "This request can no longer be resumed (the assistant's tools changed); "
                "nothing was run. Ask the assistant again.",
                allow_retry=False,
            ) from exc
        logger.info("Approval %s %s in thread %s", approval.id, decision, thread.id)
        widget = await self._widget_item(approval, sender, context)
        if widget is not None:
            yield ThreadItemReplacedEvent(
                item=widget.model_copy(
                    update={
                        "widget": approval_widget(approval),
                        "copy_text": approval_text(approval),
                    }
                )
            )
        async for event in self.resume(state, context):
            yield event

    async def resume(
        self, state: RunState[Any, Any], context: AssistantContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        """Run on from `state`, streaming into the thread; pause again if the model asks again."""
        thread, caller = context.thread, context.request_context
        ids = ItemIds(lambda kind: context.store.generate_item_id(kind, thread, caller))
        result = self.assistant.run(state, context)
        finished = False
        try:
            run = EndOnError(result)
            async for event in stream_agent_response(context, cast(RunResultStreaming, run)):
                yield ids.rewrite(event)
            if run.error is not None:
                raise run.error
            if result.interruptions:
                async for event in self.pause(result, context):
                    yield event
            finished = True
        except Exception as exc:
            logger.warning("Resumed run failed in thread %s: %s", thread.id, type(exc).__name__)
            raise stream_error_for(exc) from exc
        finally:
            if not finished:
                # As in `ChatKitBackend._answer`: wake the SDK's reader of the tool event queue.
                await context.stream(ProgressUpdateEvent(text="Stopped"))
            if not result.is_complete:
                result.cancel()
            await self.usage.record(caller.user_id, thread.id, None, result)

    async def _widget_item(
        self, approval: Approval, sender: WidgetItem | None, context: AssistantContext
    ) -> WidgetItem | None:
        """The approval's widget: the button's sender, else loaded from the thread."""
        if sender is not None and sender.id == approval.item_id:
            return sender
        try:
            item = await context.store.load_item(
                context.thread.id, approval.item_id, context.request_context
            )
        except NotFoundError:
            return None
        return item if isinstance(item, WidgetItem) else None

    @property
    def actions(self) -> dict[str, WidgetAction]:
        """The buttons' action types, each with its handler (see `WIDGET_ACTIONS`)."""
        return dict.fromkeys(APPROVAL_ACTIONS, self.decide)


def _approval_id(action: Action[str, Any]) -> str:
    """The payload's approval id; `BadRequest` without one, `NotFoundError` if it names none."""
    try:
        approval_id = ApprovalPayload.model_validate(action.payload).approval_id
    except ValidationError as exc:
        raise BadRequest("The action needs a payload with an approval_id") from exc
    if not has_id_shape(approval_id, {APPROVAL_ID_PREFIX}):
        raise NotFoundError("Approval not found")
    return approval_id
