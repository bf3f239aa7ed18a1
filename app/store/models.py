"""Tables. Each row carries `user_id`; the SDK's models live whole in a JSON `data` column."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")
ID = String(64)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSONType, datetime: DateTime(timezone=False)}


class StoredModel:
    """An SDK model stored whole in `data`, with its id, its owner and its time beside it."""

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    data: Mapped[dict[str, Any]]


class ThreadRow(StoredModel, Base):
    """Thread metadata; `created_at` is the thread's own (naive UTC if it came aware)."""

    __tablename__ = "threads"
    __table_args__ = (Index("ix_threads_user_created", "user_id", "created_at", "id"),)


class ItemRow(StoredModel, Base):
    """One thread item; ordered by the item's own `created_at`, then id."""

    __tablename__ = "thread_items"

    thread_id: Mapped[str] = mapped_column(ID, ForeignKey("threads.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))

    __table_args__ = (Index("ix_thread_items_thread_created", "thread_id", "created_at", "id"),)


class AttachmentRow(StoredModel, Base):
    """Attachment metadata; `thread_id` is set once a message that carries it is saved."""

    __tablename__ = "attachments"

    user_id: Mapped[str] = mapped_column(String(255), index=True)
    thread_id: Mapped[str | None] = mapped_column(ID, index=True)


class AttachmentContentRow(Base):
    """An attachment's bytes, for the default database file storage.

    Deleting the attachment's metadata row deletes its content in the same transaction.
    """

    __tablename__ = "attachment_contents"

    id: Mapped[str] = mapped_column(
        ID, ForeignKey("attachments.id", ondelete="CASCADE"), primary_key=True
    )
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class UsageCounterRow(Base):
    """One user's count in the current window of one limit, shared by every server process.

    One row per (user, bucket): a hit in a newer window resets the count, so the table never
    grows beyond users x limits and needs no cleanup.
    """

    __tablename__ = "usage_counters"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    bucket: Mapped[str] = mapped_column(String(32), primary_key=True)
    window_start: Mapped[datetime]
    count: Mapped[int]


class TaskRow(Base):
    """One entry of a user's task list, the default tools' own data."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(500))
    notes: Mapped[str | None] = mapped_column(Text)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index("ix_tasks_user_created", "user_id", "created_at", "id"),)


class FeedbackRow(Base):
    """A user's rating of one thread item; rating again replaces it."""

    __tablename__ = "feedback"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255))
    thread_id: Mapped[str] = mapped_column(ID, ForeignKey("threads.id", ondelete="CASCADE"))
    item_id: Mapped[str] = mapped_column(ID)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("user_id", "item_id", name="uq_feedback_user_item"),
        Index("ix_feedback_thread", "thread_id"),
    )


class TokenUsageRow(Base):
    """The tokens one turn used: its model calls and its title call, one row per turn.

    Kept when the thread is deleted (it is what the turn cost); erased with the user. The index
    serves the quota check and the reports: one user's rows since a day or a month began.
    """

    __tablename__ = "token_usage"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    thread_id: Mapped[str] = mapped_column(ID)
    item_id: Mapped[str | None] = mapped_column(ID)
    """The user message the turn answered, when there is one."""
    model: Mapped[str] = mapped_column(String(255))
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]

    __table_args__ = (
        Index(
            "ix_token_usage_user_created",
            "user_id",
            "created_at",
            postgresql_include=["input_tokens", "output_tokens"],
        ),
    )


class ApprovalRow(Base):
    """A run paused on tool calls that wait for the user's yes or no (`app/store/approvals.py`).

    `state` is the Agents SDK's `RunState.to_json()`, kept as the text it was written as.
    """

    __tablename__ = "approvals"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    thread_id: Mapped[str] = mapped_column(ID, ForeignKey("threads.id", ondelete="CASCADE"))
    item_id: Mapped[str] = mapped_column(ID)
    """The approval widget's thread item."""
    calls: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    """The pending tool calls: `call_id`, `name`, `arguments` (the model's JSON text)."""
    state: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_approvals_user_thread", "user_id", "thread_id", "created_at"),)


class ProviderFileRow(Base):
    """An attachment's copy in a model provider's Files API, per provider and base URL.

    No foreign key: deleting the attachment must first learn the file id, to delete the
    provider's copy (`app.store.model_files`); the key leads with `user_id`.
    """

    __tablename__ = "provider_files"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    attachment_id: Mapped[str] = mapped_column(ID, primary_key=True)
    provider: Mapped[str] = mapped_column(String(255), primary_key=True)
    file_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]


class RenditionRow(Base):
    """What the model gets of an attachment sent inline: a downscaled image (`data`), or, with
    `data` NULL, the original file, whose type and size are kept here for the byte budget."""

    __tablename__ = "attachment_renditions"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    attachment_id: Mapped[str] = mapped_column(ID, primary_key=True)
    mime_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class TurnLockRow(Base):
    """The turn running in a thread: its lease, renewed while it runs (see `app/turns/locks.py`).

    An expired row is no lock at all: a crashed holder leaves one that the next turn replaces.
    """

    __tablename__ = "turn_locks"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    thread_id: Mapped[str] = mapped_column(
        ID, ForeignKey("threads.id", ondelete="CASCADE"), primary_key=True
    )
    turn_id: Mapped[str] = mapped_column(ID)
    reason: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime]
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    """Set by `DELETE .../stream` on any replica; the holder's process stops the turn."""
    followed: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    """Set when a client on another process re-attaches: the holder writes `turn_events`."""


class TurnEventRow(Base):
    """One streamed event of a thread's followed turn, for a client re-attaching on another
    replica (nothing is written for a turn no such client follows).

    Bounded: deleted shortly after their turn ends; following a thread deletes any leftovers.
    """

    __tablename__ = "turn_events"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    turn_id: Mapped[str] = mapped_column(ID, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    thread_id: Mapped[str] = mapped_column(ID, ForeignKey("threads.id", ondelete="CASCADE"))
    data: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_turn_events_user_thread", "user_id", "thread_id"),)
