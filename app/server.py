"""The ChatKit server: the SDK's `ChatKitServer` bound to our store, identity and agent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, cast

import anyio
import openai
from agents import RunResultStreaming
from chatkit.actions import Action
from chatkit.agents import stream_agent_response
from chatkit.errors import CustomStreamError
from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.store import NotFoundError
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    AudioInput,
    ChatKitReq,
    ErrorEvent,
    FeedbackKind,
    ItemsFeedbackReq,
    ItemsListReq,
    ProgressUpdateEvent,
    StreamOptions,
    SyncCustomActionResponse,
    ThreadItem,
    ThreadMetadata,
    ThreadsAddStructuredInputReq,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsCustomActionReq,
    ThreadsListReq,
    ThreadsRetryAfterItemReq,
    ThreadsSyncCustomActionReq,
    ThreadStreamEvent,
    TranscriptionResult,
    UserMessageInput,
    UserMessageItem,
    WidgetItem,
    is_streaming_req,
)
from pydantic import TypeAdapter, ValidationError

from app.agent.agent import Assistant
from app.agent.approvals import ApprovalFlow
from app.agent.attachments import AttachmentInputs
from app.agent.context import AssistantContext
from app.agent.converter import HistoryConverter
from app.agent.errors import stream_error_for
from app.agent.streaming import EndOnError, ItemIds
from app.agent.title import Title, first_user_text
from app.agent.usage import UsageRecorder
from app.agent.widgets import WIDGET_ACTIONS
from app.context import RequestContext
from app.errors import AppError, BadRequest
from app.store.attachments import Attachments
from app.store.db import has_id_shape
from app.store.errors import is_outage
from app.store.feedback import FeedbackStore
from app.store.quotas import TokenQuota, TokenQuotaExceeded
from app.store.store import (
    ATTACHMENT_PREFIXES,
    ITEM_PREFIXES,
    THREAD_PREFIXES,
    SQLAlchemyStore,
    new_id,
)
from app.store.tasks import TaskStore
from app.store.turns import TurnLocks
from app.turns.registry import current_cut_note
from app.turns.turn import BUSY_MESSAGE, ThreadBusy, TurnStream, new_turn_id

logger = logging.getLogger(__name__)
MAX_LIST_ITEMS = 100
"""The longest list a request may carry: item ids, content parts, structured-input answers and
their values. A message's attachments have their own limit (`ATTACHMENT_MAX_PER_MESSAGE`)."""
OPEN_TURNS: ContextVar[list[AsyncGenerator[ThreadStreamEvent, None]] | None] = ContextVar(
    "open_turns", default=None
)
"""The turns of the request being streamed, for `_closing_turns` to close."""
REQUEST_ADAPTER: TypeAdapter[ChatKitReq] = TypeAdapter(ChatKitReq)


class NotSupported(AppError):
    """A request type this server does not implement."""

    status, code = 501, "not_implemented"


class ChatKitBackend(ChatKitServer[RequestContext]):
    """Routes ChatKit requests to the store and the agent."""

    def __init__(
        self,
        store: SQLAlchemyStore,
        attachments: Attachments,
        assistant: Assistant,
        *,
        tasks: TaskStore,
        feedback: FeedbackStore,
        quota: TokenQuota,
        approvals: ApprovalFlow,
        model_inputs: AttachmentInputs,
        locks: TurnLocks | None = None,
        stop_on_disconnect: bool = True,
    ) -> None:
        super().__init__(store, attachments)
        self.model_inputs = model_inputs
        self.store: SQLAlchemyStore = store
        self.attachments = attachments
        self.assistant = assistant
        self.tasks = tasks
        self.feedback = feedback
        self.quota = quota
        """Token quotas, checked before a request that may call the model; `quota.tokens`
        records each turn's usage."""
        self.usage = UsageRecorder(quota.tokens)
        self.approvals = approvals
        self.actions = {**WIDGET_ACTIONS, **approvals.actions}
        self.locks = locks
        """One turn per thread: a streaming request takes its thread's lock (`app/turns/`)."""
        self.stop_on_disconnect = stop_on_disconnect
        """`ON_DISCONNECT=cancel`: ChatKit's stop button (which closes the stream) works."""

    def get_stream_options(self, thread: ThreadMetadata, context: RequestContext) -> StreamOptions:
        """ChatKit's UI stops an answer by closing its stream, which it cannot tell from a page
        refresh: with `ON_DISCONNECT=finish` its stop button is not offered (clients that can
        stop a turn call `DELETE /chatkit/threads/{id}/stream`)."""
        return StreamOptions(allow_cancel=self.stop_on_disconnect)

    async def process(
        self, request: str | bytes | bytearray, context: RequestContext
    ) -> StreamingResult | NonStreamingResult:
        """Parse once, check what the SDK would only discover after writing, then dispatch.

        This mirrors `ChatKitServer.process` (openai-chatkit 1.6.5) with one change: the SDK
        builds a new `TypeAdapter(ChatKitReq)` on every call, about 5 ms of CPU per request;
        ours is built once. Dispatch stays the SDK's own (`tests/test_sdk_pins.py`).
        """
        parsed = REQUEST_ADAPTER.validate_json(request)
        await self._check(parsed, context)
        refusal = await self._quota_refusal(parsed, context)
        if is_streaming_req(parsed):
            if refusal is not None:  # one error event, no lock taken
                return TurnStream(refused(refusal), turn_id=new_turn_id(), thread_id=None)
            turn_id = new_turn_id()
            thread_id = getattr(parsed.params, "thread_id", None)
            known = None
            if thread_id is not None and self.locks is not None:
                known = await self._lock_thread(thread_id, turn_id, context)
            stream = self._closing_turns(self._process_streaming(parsed, context), known, context)
            return TurnStream(stream, turn_id=turn_id, thread_id=thread_id)
        if refusal is not None:
            raise refusal
        with sdk_refusals():
            return NonStreamingResult(await self._process_non_streaming(parsed, context))

    async def _lock_thread(
        self, thread_id: str, turn_id: str, context: RequestContext
    ) -> ThreadMetadata | None:
        """Take the thread's lock for the turn and read the thread, at once rather than one
        after the other, so the first event waits for one round trip fewer. Another user's (or
        no) thread is a 404, a busy one a 409.

        Returns the thread read, for the SDK's read that follows (`remember_thread`), if it has
        everything the turns before wrote: it was read with no lock on it, or under this turn's.
        A read that saw another turn's lock may predate that turn's last writes (it may let go
        between the two statements), and the SDK reads the thread again.
        """
        assert self.locks is not None
        acquired, read = await asyncio.gather(
            self.locks.acquire(context.user_id, thread_id, turn_id),
            self.store.load_thread_and_holder(thread_id, context),
            return_exceptions=True,
        )
        if isinstance(acquired, BaseException):
            raise acquired
        if isinstance(read, BaseException):
            if acquired:  # the thread could not be read (an outage): nothing runs under it
                await self.locks.release(context.user_id, thread_id, turn_id)
            raise read
        if acquired:
            thread, holder = read
            return thread if holder in (None, turn_id) else None
        if not await self.locks.acquire_soon(context.user_id, thread_id, turn_id):
            raise ThreadBusy(BUSY_MESSAGE)
        return None

    async def _closing_turns(
        self,
        events: AsyncIterator[bytes],
        known: ThreadMetadata | None,
        context: RequestContext,
    ) -> AsyncGenerator[bytes, None]:
        """Relay a request's stream, in the turn's task; then close the turns `respond` opened
        for it. `known`: the thread as the turn read it, for the SDK's read that follows."""
        if known is not None:  # remembered here: in the turn's task, not the caller's
            self.store.remember_thread(known, context)
        turns: list[AsyncGenerator[ThreadStreamEvent, None]] = []
        OPEN_TURNS.set(turns)  # read by `respond`, in this task or the ones it starts
        try:
            with sdk_refusals():
                async for event in events:
                    yield event
        finally:
            for turn in turns:
                await turn.aclose()

    async def _check(self, request: ChatKitReq, context: RequestContext) -> None:
        for where, size in list_sizes(request):
            if size > MAX_LIST_ITEMS:
                raise BadRequest(f"{where} may hold at most {MAX_LIST_ITEMS} entries")
        for value, prefixes, what in named_ids(request):
            if not has_id_shape(value, prefixes):
                # Like an unknown id (the value is not echoed: it can be anything).
                raise NotFoundError(f"{what} not found")
        match request:
            case ThreadsCreateReq() | ThreadsAddUserMessageReq():
                # threads.create saves the thread before it loads the attachments: a bad id
                # would leave an empty thread behind.
                await self.attachments.check_message_attachments(
                    request.params.input.attachments,
                    getattr(request.params, "thread_id", None),
                    context,
                )
            case ThreadsRetryAfterItemReq():
                # The SDK silently streams nothing for an unknown item.
                item = await self.store.load_item(
                    request.params.thread_id, request.params.item_id, context
                )
                if not isinstance(item, UserMessageItem):
                    raise BadRequest(f"Item {item.id} is not a user message")
            case ThreadsCustomActionReq():
                await self.approvals.check(request.params.thread_id, request.params.action, context)
            case ThreadsListReq() | ItemsListReq():
                if request.params.limit is not None and request.params.limit < 1:
                    raise BadRequest("params.limit must be at least 1")
            case _:
                pass

    async def _quota_refusal(
        self, request: ChatKitReq, context: RequestContext
    ) -> TokenQuotaExceeded | None:
        """Over a token quota, a request that may call the model is refused before it runs,
        nothing written: every streaming request, and `threads.sync_custom_action` (a hook an
        integration may answer with a model call)."""
        if not (is_streaming_req(request) or isinstance(request, ThreadsSyncCustomActionReq)):
            return None
        return await self.quota.check(context)

    def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: RequestContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        """The turn's events (see `_answer`), closed when the request's stream ends.

        The SDK stops reading a turn when saving one of its items fails, and leaves it
        suspended: closed here, its clean-up runs at once rather than whenever it is collected.
        """
        turn = self._answer(thread, context, input_user_message)
        turns = OPEN_TURNS.get()
        if turns is not None:
            turns.append(turn)
        return turn

    async def _answer(
        self,
        thread: ThreadMetadata,
        context: RequestContext,
        message: UserMessageItem | None = None,
    ) -> AsyncGenerator[ThreadStreamEvent, None]:
        """Run the agent over the thread's recent items and stream its answer.

        A failure of the model ends the turn with a readable error event; the answer streamed so
        far is not saved (finished items, such as tool widgets, are), so the thread holds only
        complete items and `threads.retry_after_item` starts clean. Titles the thread after its
        first successful exchange (the title is written while the answer streams). What the
        model calls used, the title's included, is recorded as the turn's one usage row.
        """
        agent_context = self._agent_context(thread, context)
        ids = ItemIds(lambda kind: self.store.generate_item_id(kind, thread, context))
        newest_first, complete = await self._newest_items(thread, context)
        history = newest_first[::-1]
        # The title needs only the first message: write it while the answer streams.
        title = (
            asyncio.create_task(self.assistant.title(first_user_text(history)))
            if thread.title is None and self.assistant.titles
            else None
        )
        result = None
        answered = False
        try:
            converter = HistoryConverter(self.model_inputs.turn(context), self.assistant.api)
            agent_input = await converter.to_agent_input(history)
            result = self.assistant.run(agent_input, agent_context)
            # The SDK reads the two newest items first: it gets them from the history (this
            # task only, not the run's, which started in a copy of this context before it).
            self.store.remember_newest(thread.id, newest_first, complete, context)
            run = EndOnError(result)
            async for event in stream_agent_response(agent_context, cast(RunResultStreaming, run)):
                yield ids.rewrite(event)
            if run.error is not None:
                raise run.error
            if result.interruptions:  # tools that ask first: wait for the user's decision
                async for event in self.approvals.pause(result, agent_context):
                    yield event
            answered = True
        except Exception as exc:
            error = stream_error_for(exc)
            # Provider errors and outages are expected weather; anything else needs its traceback.
            expected = isinstance(exc, openai.APIError | CustomStreamError) or is_outage(exc)
            logger.warning(
                "Turn failed in thread %s: %s",
                thread.id,
                type(exc).__name__,
                exc_info=None if expected else exc,
            )
            raise error from exc
        finally:
            if not answered:
                # Cancelled, failed or closed early: wake the SDK's reader of the tool event
                # queue, or its task would be left pending forever.
                await agent_context.stream(ProgressUpdateEvent(text="Stopped"))
            if result is not None and not result.is_complete:
                result.cancel()  # e.g. the client went away: stop the model
            if title is not None and not answered:
                title.cancel()  # only a successful exchange is titled
            if not answered:
                await self._record_usage(thread, message, context, result, None)
        titled = None
        try:
            titled = await title if title is not None else None
        finally:  # the answer is given: its tokens count even if the client leaves now
            await self._record_usage(thread, message, context, result, titled)
        if titled is not None:
            thread.title = titled.text

    async def action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: RequestContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        """A widget's button: the handler `WIDGET_ACTIONS` (or the approvals) name for its type."""
        handler = self.actions.get(action.type)
        if handler is None:
            raise CustomStreamError(f"Unknown action {action.type!r}.", allow_retry=False)
        async for event in handler(action, sender, self._agent_context(thread, context)):
            yield event

    async def transcribe(
        self, audio_input: AudioInput, context: RequestContext
    ) -> TranscriptionResult:
        raise NotSupported("This server does not transcribe audio (input.transcribe)")

    async def sync_action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: RequestContext,
    ) -> SyncCustomActionResponse:
        raise NotSupported("This server has no synchronous actions (threads.sync_custom_action)")

    async def add_feedback(
        self,
        thread_id: str,
        item_ids: list[str],
        feedback: FeedbackKind,
        context: RequestContext,
    ) -> None:
        """Store the rating per user and item; another user's thread is a 404."""
        await self.store.load_thread(thread_id, context)
        await self.feedback.save(context.user_id, thread_id, item_ids, feedback)

    async def handle_stream_cancelled(
        self,
        thread: ThreadMetadata,
        pending_items: list[ThreadItem],
        context: RequestContext,
    ) -> None:
        """Save the partial answer and a note, shielded: this runs in a cancelled task.

        Starlette cancels a disconnected stream through an anyio cancel scope, which would cancel
        every await here again and lose the writes. A turn cut by the server (its background
        cap, a shutdown) also ends its answer with a note the reader sees.
        """
        if (note := current_cut_note()) is not None:
            pending_items = with_note(thread, pending_items, note)
        with anyio.CancelScope(shield=True):
            await super().handle_stream_cancelled(thread, pending_items, context)

    async def _record_usage(
        self,
        thread: ThreadMetadata,
        message: UserMessageItem | None,
        context: RequestContext,
        result: RunResultStreaming | None,
        title: Title | None,
    ) -> None:
        item_id = message.id if message is not None else None
        await self.usage.record(context.user_id, thread.id, item_id, result, title)

    def _agent_context(self, thread: ThreadMetadata, context: RequestContext) -> AssistantContext:
        """What the tools (and the widget actions) see: the thread, the store, the caller."""
        return AssistantContext(
            thread=thread, store=self.store, request_context=context, tasks=self.tasks
        )

    async def _newest_items(
        self, thread: ThreadMetadata, context: RequestContext
    ) -> tuple[list[ThreadItem], bool]:
        """The newest `HISTORY_WINDOW` items, newest first, and whether they are all there are."""
        window = self.assistant.history_window
        items: list[ThreadItem] = []
        after: str | None = None
        while len(items) < window:
            page = await self.store.load_thread_items(
                thread.id, after, window - len(items), "desc", context
            )
            items.extend(page.data)
            if not page.has_more:
                return items, True
            after = page.after
        return items, False


async def refused(refusal: TokenQuotaExceeded) -> AsyncGenerator[bytes, None]:
    """A stream of one error event that tells why the request was refused."""
    event = ErrorEvent(message=refusal.message, allow_retry=False)
    yield b"data: " + event.model_dump_json(exclude_none=True).encode() + b"\n\n"


def with_note(thread: ThreadMetadata, pending: list[ThreadItem], note: str) -> list[ThreadItem]:
    """`pending` with `note` ending its last assistant message, or as a message of its own."""
    messages = [item for item in pending if isinstance(item, AssistantMessageItem)]
    if messages and messages[-1].content:
        last = messages[-1].content[-1]
        last.text = f"{last.text.rstrip()}\n\n{note}" if last.text.strip() else note
        return pending
    item = AssistantMessageItem(
        id=new_id("message"),
        thread_id=thread.id,
        created_at=datetime.now(),
        content=[AssistantMessageContent(text=note)],
    )
    return [*pending, item]


@contextmanager
def sdk_refusals() -> Iterator[None]:
    """The SDK refuses a request that cannot apply (tool output with no pending client tool
    call, structured input for an item that is not pending) with a bare `ValueError`."""
    try:
        yield
    except ValidationError:
        raise
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


def list_sizes(request: ChatKitReq) -> Iterator[tuple[str, int]]:
    """The length of every list a request carries, with where it is."""
    params = request.params
    if isinstance(request, ItemsFeedbackReq):
        yield "params.item_ids", len(request.params.item_ids)
    if isinstance(message := getattr(params, "input", None), UserMessageInput):
        yield "params.input.content", len(message.content)
    if isinstance(request, ThreadsAddStructuredInputReq):
        answers = request.params.input.answers
        yield "params.input.answers", len(answers)
        for key, answer in answers.items():
            yield f"params.input.answers.{key[:40]}.values", len(answer.values)


def named_ids(request: ChatKitReq) -> Iterator[tuple[str, frozenset[str], str]]:
    """Every id a request names, with the prefixes it may have and what it names."""
    params = request.params
    if isinstance(thread_id := getattr(params, "thread_id", None), str):
        yield thread_id, THREAD_PREFIXES, "Thread"
    if isinstance(item_id := getattr(params, "item_id", None), str):
        yield item_id, ITEM_PREFIXES, "Item"
    for item_id in getattr(params, "item_ids", ()):
        yield item_id, ITEM_PREFIXES, "Item"
    if isinstance(attachment_id := getattr(params, "attachment_id", None), str):
        yield attachment_id, ATTACHMENT_PREFIXES, "Attachment"
    if isinstance(message := getattr(params, "input", None), UserMessageInput):
        for attachment_id in message.attachments:
            yield attachment_id, ATTACHMENT_PREFIXES, "Attachment"
    if isinstance(request, ThreadsListReq) and request.params.after is not None:
        yield request.params.after, THREAD_PREFIXES, "Thread"
    if isinstance(request, ItemsListReq) and request.params.after is not None:
        yield request.params.after, ITEM_PREFIXES, "Item"
