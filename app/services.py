"""The composition: every long-lived object, built once from settings and handed to its users.

`create_app` builds one `Services` and hands it to the edge middleware, to the routes (through
`app/http/deps.py`) and, by construction, to the server; `python -m app.cleanup` builds one too.
Building opens nothing (it reads `AGENT_CONFIG`, and refuses a bad one): `lifespan()` is what
runs while the objects serve. It migrates the embedded SQLite database, starts the assistant
(`AGENT_FACTORY`'s agent, the MCP servers) and at its end closes what they hold, in reverse order.

A new part (a usage store, say) is a field, one line in `build`, and, if it holds resources,
its clean-up in `lifespan`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from app.agent.agent import Assistant
from app.agent.approvals import ApprovalFlow
from app.agent.attachments import AttachmentInputs
from app.agent.config import load_agent_config
from app.agent.factory import AgentSetup
from app.agent.model import ModelClient, build_model, build_model_client
from app.agent.provider_files import provider_files
from app.agent.usage import UsageRecorder
from app.config import Settings
from app.http.auth.identity import Identity
from app.http.ratelimit import RateLimiter
from app.http.sse import OpenStreams
from app.observability.tracing import Tracing
from app.server import ChatKitBackend
from app.store.approvals import ApprovalStore
from app.store.attachments import AttachmentLimits, Attachments
from app.store.db import create_engine, migration_head
from app.store.feedback import FeedbackStore
from app.store.files import DatabaseFileStorage, FileStorage
from app.store.model_files import ModelFileStore
from app.store.quotas import TokenQuota
from app.store.s3 import S3Config, S3FileStorage
from app.store.schema import Schema
from app.store.store import SQLAlchemyStore
from app.store.tasks import TaskStore
from app.store.tokens import TokenUsageStore
from app.store.urls import signer_from_settings
from app.store.userdata import UserData
from app.turns.registry import Turns


@dataclass(frozen=True, slots=True)
class Services:
    """What the application serves with; one per application (or per command)."""

    settings: Settings
    engine: AsyncEngine
    store: SQLAlchemyStore
    attachments: Attachments
    model_inputs: AttachmentInputs
    """How attachments reach the model: uploaded once, or inline within a byte budget."""
    tasks: TaskStore
    feedback: FeedbackStore
    quota: TokenQuota
    """Token usage (`quota.tokens`), quotas and the usage report."""
    userdata: UserData
    """A user's data on request: export and erase."""
    approvals: ApprovalStore
    model_client: ModelClient | None
    """The model provider's client; `None` for the fake model, or when its key is missing."""
    assistant: Assistant
    """The agent, its models and its MCP servers."""
    server: ChatKitBackend
    identity: Identity
    rate_limiter: RateLimiter
    streams: OpenStreams
    turns: Turns
    """The turns this process runs: they outlive the requests that start them."""
    migration_head: str | None
    """The newest migration: `/readyz` wants the database there."""
    schema: Schema
    """Whether the database is there (the embedded one gets there itself, at startup)."""
    tracing: Tracing | None = None
    """OpenTelemetry, when the standard `OTEL_*` variables ask for it (`app/observability`)."""

    @classmethod
    def build(cls, settings: Settings) -> Services:
        agent_config = load_agent_config(settings)  # AGENT_CONFIG, MCP_CONFIG: refused here if bad
        engine = create_engine(settings)
        files = file_storage(settings, engine)
        urls = signer_from_settings(settings)
        model_client = build_model_client(settings)
        store = SQLAlchemyStore(engine, files=files, attachment_urls=urls)
        attachments = Attachments(store, files, urls, AttachmentLimits.from_settings(settings))
        model_inputs = AttachmentInputs(
            attachments,
            ModelFileStore(engine),
            provider_files(settings, model_client),
            api=model_client.api if model_client else "responses",
            inline_budget=settings.attachment_inline_budget_bytes,
        )
        store.attachments_deleted = model_inputs.forget
        tasks, feedback = TaskStore(engine), FeedbackStore(store)
        head = migration_head()
        quota = TokenQuota(settings, TokenUsageStore(engine))
        turns = Turns.from_settings(settings, store)
        model = build_model(settings, model_client, agent_config.model)
        assistant = Assistant(AgentSetup(settings, agent_config, model_client, model))
        approvals = ApprovalStore(engine)
        max_age = timedelta(seconds=settings.approval_max_age_seconds)
        flow = ApprovalFlow(
            approvals, assistant, max_age=max_age, usage=UsageRecorder(quota.tokens)
        )
        server = ChatKitBackend(
            store,
            attachments,
            assistant,
            tasks=tasks,
            feedback=feedback,
            quota=quota,
            approvals=flow,
            model_inputs=model_inputs,
            locks=turns.locks,
            stop_on_disconnect=settings.on_disconnect == "cancel",
        )
        return cls(
            settings=settings,
            engine=engine,
            store=store,
            attachments=attachments,
            model_inputs=model_inputs,
            tasks=tasks,
            feedback=feedback,
            quota=quota,
            userdata=UserData(engine, files, forget_model_copies=model_inputs.forget_user),
            approvals=approvals,
            model_client=model_client,
            assistant=assistant,
            server=server,
            identity=Identity.from_settings(settings),
            rate_limiter=RateLimiter(settings, engine),
            streams=OpenStreams(),
            turns=turns,
            migration_head=head,
            schema=Schema(engine, settings.database_url, head, embedded=settings.is_sqlite),
            tracing=Tracing.from_environment(settings.trace_user_id),
        )

    @asynccontextmanager
    async def lifespan(self, *, agent: bool = True) -> AsyncIterator[Services]:
        """Serve; then cut the turns still running and let interrupted streams save their
        partial replies (turns first: a cut turn ends its readers' streams), and only then close
        the MCP servers, file storage, the model client and the database.

        `agent=False` is for a command that runs no turns: the assistant is not started.
        """
        async with AsyncExitStack() as stack:
            if self.tracing is not None:  # closed last: the clean-up's spans are exported too
                self.tracing.start(self.engine)
                stack.push_async_callback(self.tracing.shutdown)
            stack.push_async_callback(self.engine.dispose)
            await self.schema.prepare()
            if self.model_client is not None:
                stack.push_async_callback(self.model_client.aclose)
            stack.push_async_callback(self.attachments.files.aclose)
            if agent:
                stack.push_async_callback(self.assistant.aclose)
                await self.assistant.start()
            stack.push_async_callback(self.streams.close)
            if agent:
                self.turns.open()
                stack.push_async_callback(self.turns.close)  # first: turns save, then streams end
            yield self


def file_storage(settings: Settings, engine: AsyncEngine) -> FileStorage:
    """Where attachment bytes live (`ATTACHMENT_STORAGE`): a new backend is one line here."""
    if settings.attachment_storage == "s3":
        return S3FileStorage(S3Config.from_settings(settings))
    return DatabaseFileStorage(engine)
