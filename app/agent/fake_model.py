"""A deterministic `agents.Model` for demos, benchmarks and tests (`MODEL_PROVIDER=fake`).

It streams real Responses API events (`response.created`, `response.output_text.delta`,
`response.function_call_arguments.done`, `response.completed`, ...), so the Agents SDK and
`stream_agent_response` run exactly the code paths they run against OpenAI.

Unscripted, it answers every turn with `tokens` words that start by echoing the user; a message
like `/add_task {"title": "Buy milk"}` makes it call that tool, MCP tools included (demos of the
tools need no key).
Tests push `FakeTurn`s onto its `script` to make it call tools, fail, or drop the stream.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from agents import ModelResponse, ModelSettings, ModelTracing, Tool, TResponseInputItem, Usage
from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import TResponseOutputItem, TResponseStreamEvent
from agents.models.interface import Model
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    ResponseUsage,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

FILLER = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
]
TOKEN = re.compile(r"\s*\S+\s*")
SLASH_COMMAND = re.compile(r"/(?P<name>[\w-]+)\s*(?P<arguments>\{.*\})?", re.DOTALL)
"""`/tool_name {"arg": ...}`: MCP tools' names may hold hyphens (`/get-weather {...}`)."""


@dataclass(frozen=True, slots=True)
class FakeToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(slots=True)
class FakeTurn:
    """One scripted model call: text and/or tool calls, or a failure."""

    text: str | None = None
    tool_calls: list[FakeToolCall] = field(default_factory=list)
    error: BaseException | None = None
    """Raised before anything is streamed, or after `drop_after` tokens when that is set."""
    drop_after: int | None = None
    """Stop after this many text tokens without `response.completed`, as a dropped stream does."""
    hold: asyncio.Event | None = None
    """Awaited before failing or dropping the stream: a test reads the tokens that came first."""
    pause_after: int | None = None
    """Await `hold` after this many text tokens, then go on: a test acts mid-answer."""

    @classmethod
    def say(
        cls,
        text: str,
        *,
        drop_after: int | None = None,
        hold: asyncio.Event | None = None,
        pause_after: int | None = None,
    ) -> FakeTurn:
        return cls(text=text, drop_after=drop_after, hold=hold, pause_after=pause_after)

    @classmethod
    def call(cls, name: str, /, **arguments: Any) -> FakeTurn:
        return cls(tool_calls=[FakeToolCall(name, arguments)])

    @classmethod
    def fail(
        cls,
        error: BaseException,
        *,
        after_tokens: int | None = None,
        hold: asyncio.Event | None = None,
    ) -> FakeTurn:
        text = "partial " * (after_tokens or 0)
        return cls(text=text, error=error, drop_after=after_tokens, hold=hold)


@dataclass(slots=True)
class FakeCall:
    """What the model was asked, and whether it finished streaming its answer."""

    instructions: str | None
    input: list[TResponseInputItem]
    tool_names: list[str]
    finished: bool = False
    closed_early: bool = False


@dataclass
class FakeScript:
    """Turns to play before falling back to the default echo, and the calls seen so far."""

    turns: deque[FakeTurn] = field(default_factory=deque)
    calls: list[FakeCall] = field(default_factory=list)

    def push(self, *turns: FakeTurn) -> None:
        self.turns.extend(turns)

    def reset(self) -> None:
        self.turns.clear()
        self.calls.clear()


def split_tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def last_user_text(items: Sequence[TResponseInputItem]) -> str:
    """The text of the newest user message in the model's input, or an empty string."""
    for item in reversed(items):
        entry = cast(dict[str, Any], item)
        if entry.get("role") != "user" or entry.get("type", "message") != "message":
            continue
        content = entry.get("content")
        if isinstance(content, str):
            return content
        texts = [part.get("text", "") for part in content or [] if isinstance(part, dict)]
        return " ".join(text for text in texts if text)
    return ""


def output_text(output: object) -> str:
    """A tool's output as text: MCP tools answer with content parts (`[{"text": ...}]`)."""
    if isinstance(output, list):
        return " ".join(str(part.get("text", "")) for part in output if isinstance(part, dict))
    return str(output)


def default_reply(items: Sequence[TResponseInputItem], tokens: int) -> str:
    """`You said: <the user's words>` padded with filler (or cut) to exactly `tokens` words."""
    words = ["You", "said:", *last_user_text(items).split()]
    words += [FILLER[n % len(FILLER)] for n in range(max(0, tokens - len(words)))]
    return " ".join(words[:tokens])


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


class FakeModel(Model):
    """Streams scripted (or default) turns token by token, `delay` seconds apart."""

    def __init__(self, *, tokens: int, delay: float, script: FakeScript | None = None) -> None:
        self.tokens = tokens
        self.delay = delay
        self.script = script or FakeScript()

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        response: Response | None = None
        async for event in self.stream_response(
            system_instructions,
            input,
            model_settings,
            tools,
            output_schema,
            handoffs,
            tracing,
            previous_response_id=previous_response_id,
            conversation_id=conversation_id,
            prompt=prompt,
        ):
            if isinstance(event, ResponseCompletedEvent):
                response = event.response
        if response is None:
            raise ConnectionError("The fake model's response ended early")
        return ModelResponse(output=response.output, usage=Usage(), response_id=response.id)

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        items: list[TResponseInputItem] = (
            [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
        )
        call = FakeCall(system_instructions, items, [getattr(tool, "name", "") for tool in tools])
        self.script.calls.append(call)
        turn = self.script.turns.popleft() if self.script.turns else self._unscripted(items, tools)
        try:
            async for event in self._play(turn):
                yield event
            call.finished = True
        finally:
            call.closed_early = not call.finished

    def _unscripted(self, items: list[TResponseInputItem], tools: list[Tool]) -> FakeTurn:
        """Echo the user; `/tool_name {"arg": ...}` calls that tool first (for demos)."""
        last = cast(dict[str, Any], items[-1]) if items else {}
        if last.get("type") == "function_call_output":
            return FakeTurn.say(f"The tool answered: {output_text(last.get('output'))}")
        command = SLASH_COMMAND.fullmatch(last_user_text(items).strip())
        names = {getattr(tool, "name", None) for tool in tools}
        if command and command["name"] in names:
            try:
                arguments = json.loads(command["arguments"] or "{}")
            except json.JSONDecodeError:
                arguments = None
            if isinstance(arguments, dict):
                return FakeTurn.call(command["name"], **arguments)
        return FakeTurn.say(default_reply(items, self.tokens))

    async def _play(self, turn: FakeTurn) -> AsyncIterator[TResponseStreamEvent]:
        if turn.error is not None and turn.drop_after is None:
            raise turn.error
        events = _EventBuilder()
        yield events.created()
        yield events.in_progress()
        output: list[TResponseOutputItem] = []
        if turn.text is not None:
            message_id = _id("msg")
            for event in events.message_added(message_id, len(output)):
                yield event
            streamed = ""
            tokens = split_tokens(turn.text)
            for index, token in enumerate(tokens[: turn.drop_after]):
                if index == turn.pause_after and turn.hold is not None:
                    await turn.hold.wait()
                await asyncio.sleep(self.delay)
                streamed += token
                yield events.text_delta(message_id, len(output), token)
            dropped = turn.drop_after is not None and turn.drop_after < len(tokens)
            if dropped or (turn.drop_after is not None and turn.error is not None):
                if turn.hold is not None:
                    await turn.hold.wait()
                if turn.error is not None:
                    raise turn.error
                return
            message = ResponseOutputMessage(
                id=message_id,
                type="message",
                role="assistant",
                status="completed",
                content=[ResponseOutputText(type="output_text", text=streamed, annotations=[])],
            )
            for event in events.message_done(message, len(output)):
                yield event
            output.append(message)
        for tool_call in turn.tool_calls:
            function_call = ResponseFunctionToolCall(
                id=_id("fc"),
                call_id=_id("call"),
                type="function_call",
                name=tool_call.name,
                arguments=json.dumps(tool_call.arguments),
                status="completed",
            )
            for event in events.function_call(function_call, len(output)):
                yield event
            output.append(function_call)
        yield events.completed(output, output_tokens=len(split_tokens(turn.text or "")))


class _EventBuilder:
    """Responses API stream events with increasing sequence numbers."""

    def __init__(self) -> None:
        self.response_id = _id("resp")
        self.sequence = -1

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    def _response(self, output: list[TResponseOutputItem], status: str) -> Response:
        return Response.model_validate(
            {
                "id": self.response_id,
                "created_at": 0,
                "model": "fake",
                "object": "response",
                "output": [item.model_dump() for item in output],
                "tool_choice": "auto",
                "tools": [],
                "top_p": None,
                "parallel_tool_calls": False,
                "status": status,
            }
        )

    def created(self) -> TResponseStreamEvent:
        response = self._response([], "in_progress")
        return ResponseCreatedEvent(
            type="response.created", response=response, sequence_number=self._next()
        )

    def in_progress(self) -> TResponseStreamEvent:
        response = self._response([], "in_progress")
        return ResponseInProgressEvent(
            type="response.in_progress", response=response, sequence_number=self._next()
        )

    def message_added(self, message_id: str, index: int) -> list[TResponseStreamEvent]:
        return [
            ResponseOutputItemAddedEvent(
                type="response.output_item.added",
                output_index=index,
                item=ResponseOutputMessage(
                    id=message_id,
                    type="message",
                    role="assistant",
                    status="in_progress",
                    content=[],
                ),
                sequence_number=self._next(),
            ),
            ResponseContentPartAddedEvent(
                type="response.content_part.added",
                item_id=message_id,
                output_index=index,
                content_index=0,
                part=ResponseOutputText(type="output_text", text="", annotations=[]),
                sequence_number=self._next(),
            ),
        ]

    def text_delta(self, message_id: str, index: int, delta: str) -> TResponseStreamEvent:
        return ResponseTextDeltaEvent(
            type="response.output_text.delta",
            item_id=message_id,
            output_index=index,
            content_index=0,
            delta=delta,
            logprobs=[],
            sequence_number=self._next(),
        )

    def message_done(
        self, message: ResponseOutputMessage, index: int
    ) -> list[TResponseStreamEvent]:
        part = message.content[0]
        assert isinstance(part, ResponseOutputText)
        return [
            ResponseTextDoneEvent(
                type="response.output_text.done",
                item_id=message.id,
                output_index=index,
                content_index=0,
                text=part.text,
                logprobs=[],
                sequence_number=self._next(),
            ),
            ResponseContentPartDoneEvent(
                type="response.content_part.done",
                item_id=message.id,
                output_index=index,
                content_index=0,
                part=part,
                sequence_number=self._next(),
            ),
            ResponseOutputItemDoneEvent(
                type="response.output_item.done",
                output_index=index,
                item=message,
                sequence_number=self._next(),
            ),
        ]

    def function_call(
        self, call: ResponseFunctionToolCall, index: int
    ) -> list[TResponseStreamEvent]:
        item_id = call.id or call.call_id
        return [
            ResponseOutputItemAddedEvent(
                type="response.output_item.added",
                output_index=index,
                item=call.model_copy(update={"arguments": "", "status": "in_progress"}),
                sequence_number=self._next(),
            ),
            ResponseFunctionCallArgumentsDeltaEvent(
                type="response.function_call_arguments.delta",
                item_id=item_id,
                output_index=index,
                delta=call.arguments,
                sequence_number=self._next(),
            ),
            ResponseFunctionCallArgumentsDoneEvent.model_validate(
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": item_id,
                    "output_index": index,
                    "name": call.name,
                    "arguments": call.arguments,
                    "sequence_number": self._next(),
                }
            ),
            ResponseOutputItemDoneEvent(
                type="response.output_item.done",
                output_index=index,
                item=call,
                sequence_number=self._next(),
            ),
        ]

    def completed(
        self, output: list[TResponseOutputItem], *, output_tokens: int
    ) -> TResponseStreamEvent:
        response = self._response(output, "completed")
        response.usage = ResponseUsage(
            input_tokens=0,
            output_tokens=output_tokens,
            total_tokens=output_tokens,
            input_tokens_details=InputTokensDetails(cached_tokens=0, cache_write_tokens=0),
            output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
        )
        return ResponseCompletedEvent(
            type="response.completed", response=response, sequence_number=self._next()
        )
