"""The SDK's `Store` over SQLAlchemy: one definition of each statement for PostgreSQL and SQLite.

The statements every turn runs are built once and `prepare`d (`SingleStatements`): on
PostgreSQL they run on asyncpg directly, as SQLAlchemy compiled them.

Every statement is scoped by `context.user_id`: another user's row is indistinguishable from a
missing one. Each method is one short transaction, because a stream outlives its HTTP handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from chatkit.store import NotFoundError, Store, StoreItemType
from chatkit.types import (
    ActiveStatus,
    Attachment,
    LockedStatus,
    Page,
    ThreadItem,
    ThreadMetadata,
    UserMessageItem,
)
from pydantic import TypeAdapter
from sqlalchemy import Select, bindparam, delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.context import RequestContext
from app.store.db import Prepared, Row, autocommit, random_id, upsert_insert, utcnow
from app.store.files import FileStorage
from app.store.models import AttachmentRow, ItemRow, ThreadRow, TurnLockRow
from app.store.urls import AttachmentUrlSigner

T = TypeVar("T")
MAX_PAGE_SIZE = 100
CLEANUP_BATCH_SIZE = 500
ID_PREFIXES: dict[StoreItemType, str] = {
    "thread": "thr",
    "message": "msg",
    "tool_call": "tc",
    "workflow": "wf",
    "task": "tsk",
    "attachment": "atc",
    "sdk_hidden_context": "shcx",
}

THREAD_PREFIXES = frozenset({ID_PREFIXES["thread"]})
ATTACHMENT_PREFIXES = frozenset({ID_PREFIXES["attachment"]})
ITEM_PREFIXES = frozenset(ID_PREFIXES.values()) - THREAD_PREFIXES - ATTACHMENT_PREFIXES

ITEM_ADAPTER: TypeAdapter[ThreadItem] = TypeAdapter(ThreadItem)
ATTACHMENT_ADAPTER: TypeAdapter[Attachment] = TypeAdapter(Attachment)

TURN_LOCK_REASON = "Answering…"
"""What a thread's `locked` status says while a turn runs in it."""

PENDING = AttachmentRow.data["upload_descriptor"].as_string().is_not(None)
"""A two-phase attachment whose bytes have not arrived yet (its JSON has an upload descriptor)."""


class NewestItems(NamedTuple):
    """A thread's newest items as a turn just read them (`SQLAlchemyStore.remember_newest`)."""

    user_id: str
    thread_id: str
    items: list[ThreadItem]
    """Newest first."""
    complete: bool
    """The thread holds no older item."""


NEWEST_READ: ContextVar[NewestItems | None] = ContextVar("newest_items_read", default=None)


class KnownThread(NamedTuple):
    """A thread as a turn just read it (`SQLAlchemyStore.remember_thread`)."""

    user_id: str
    thread: ThreadMetadata


THREAD_READ: ContextVar[KnownThread | None] = ContextVar("thread_read", default=None)


def new_id(item_type: StoreItemType) -> str:
    """An id for the SDK's item type, keeping its prefix (`thr_`, `msg_`, ...)."""
    return random_id(ID_PREFIXES[item_type])


def sort_key(moment: datetime) -> datetime:
    """The value of a `created_at` column: naive as given, or aware converted to naive UTC."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


class SQLAlchemyStore(Store[RequestContext]):
    """Threads, items and attachment metadata in the database, every row owned by one user.

    The only code that reads or writes the `threads`, `thread_items` and `attachments` tables.
    Deleting an attachment's row deletes its bytes from `files` too.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        files: FileStorage | None = None,
        attachment_urls: AttachmentUrlSigner | None = None,
        attachments_deleted: Callable[[str, Sequence[str]], Awaitable[None]] | None = None,
    ) -> None:
        self.engine = engine
        self._single = autocommit(engine)
        """For methods that run one statement: atomic on its own, so no transaction."""
        self.files = files
        """Where attachment bytes live; deleting a thread deletes its attachments' content."""
        self.attachment_urls = attachment_urls
        """Re-signs image preview URLs on every load, since signed URLs expire."""
        self.attachments_deleted = attachments_deleted
        """Told (owner, ids) after attachments that may have reached the model are deleted, to
        delete their model copies (`AttachmentInputs.forget`); never-attached ones reached none."""
        insert = upsert_insert(engine)
        # Built once: constructing an upsert costs more CPU than sending it.
        prepare = self._single.prepare
        self._upsert_thread = prepare(owned_upsert(insert(ThreadRow), ThreadRow, ["data"]))
        self._upsert_attachment = prepare(
            owned_upsert(insert(AttachmentRow), AttachmentRow, ["data", "thread_id"])
        )
        self._upsert_item_stmt = prepare(item_upsert(insert))
        self._thread = prepare(THREAD)
        self._newest_items = prepare(NEWEST_ITEMS)
        self._oldest_items = prepare(OLDEST_ITEMS)

    # ids

    def generate_thread_id(self, context: RequestContext) -> str:
        return new_id("thread")

    def generate_item_id(
        self, item_type: StoreItemType, thread: ThreadMetadata, context: RequestContext
    ) -> str:
        return new_id(item_type)

    # threads

    async def load_thread(self, thread_id: str, context: RequestContext) -> ThreadMetadata:
        """The thread, `locked` while a turn holds an unexpired lease on it."""
        known = THREAD_READ.get()
        if known is not None:
            THREAD_READ.set(None)
            if known.user_id == context.user_id and known.thread.id == thread_id:
                return known.thread
        thread, _holder = await self.load_thread_and_holder(thread_id, context)
        return thread

    async def load_thread_and_holder(
        self, thread_id: str, context: RequestContext
    ) -> tuple[ThreadMetadata, str | None]:
        """The thread, and the id of the turn holding its unexpired lock, if one does."""
        params = {"p_thread": thread_id, "p_user": context.user_id, "p_now": utcnow()}
        rows = await self._single.rows(self._thread, params)
        if not rows:
            raise NotFoundError(f"Thread {thread_id} not found")
        return _thread(rows[0]), rows[0]["lock_turn"]

    async def save_thread(self, thread: ThreadMetadata, context: RequestContext) -> None:
        """Only the metadata of a full `Thread` is stored; a turn's lock never is (it lives in
        `turn_locks`, whose lease expires with a crashed holder)."""
        THREAD_READ.set(None)
        data = thread.model_dump(mode="json", exclude={"items"})
        if isinstance(thread.status, LockedStatus) and thread.status.reason == TURN_LOCK_REASON:
            data["status"] = ActiveStatus().model_dump(mode="json")
        row = {
            "id": thread.id,
            "user_id": context.user_id,
            "created_at": sort_key(thread.created_at),
            "data": data,
        }
        await self._upsert(self._upsert_thread, row, f"Thread {thread.id} not found")

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: RequestContext
    ) -> Page[ThreadMetadata]:
        owned = ThreadRow.user_id == context.user_id
        cursor = (
            select(ThreadRow.created_at).where(ThreadRow.id == after, owned).scalar_subquery()
            if after
            else None
        )
        stmt = _keyset(
            _with_lock(select(ThreadRow.id, ThreadRow.data), context.user_id, utcnow()).where(
                owned
            ),
            ThreadRow,
            after,
            cursor,
            order,
        )
        return await self._page(Prepared(stmt), {}, limit, _thread)

    async def delete_thread(self, thread_id: str, context: RequestContext) -> None:
        """Delete the thread, its items (by cascade) and its attachments, content included.

        Database-stored content goes by cascade in the same transaction; other file storages
        are told afterwards.
        """
        owned = ThreadRow.user_id == context.user_id
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(ThreadRow).where(ThreadRow.id == thread_id, owned))
            if result.rowcount == 0:
                raise NotFoundError(f"Thread {thread_id} not found")
            deleted = await conn.execute(
                delete(AttachmentRow)
                .where(
                    AttachmentRow.thread_id == thread_id, AttachmentRow.user_id == context.user_id
                )
                .returning(AttachmentRow.id)
            )
            attachment_ids = list(deleted.scalars())
        if self.files is not None and attachment_ids:
            await self.files.delete(attachment_ids)
        if self.attachments_deleted is not None and attachment_ids:
            await self.attachments_deleted(context.user_id, attachment_ids)

    # items

    async def load_thread_items(
        self,
        thread_id: str,
        after: str | None,
        limit: int,
        order: str,
        context: RequestContext,
    ) -> Page[ThreadItem]:
        if after is None and order == "desc":
            known = _newest_known(thread_id, limit, context)
            if known is not None:
                return known
        params = {"p_thread": thread_id, "p_user": context.user_id}
        if after:
            cursor = (
                select(ItemRow.created_at)
                .where(ItemRow.id == after, *OWNED_ITEMS)
                .scalar_subquery()
            )
            stmt = Prepared(_keyset(ITEMS, ItemRow, after, cursor, order))
        else:
            stmt = self._newest_items if order == "desc" else self._oldest_items
        page = await self._page(
            stmt, params, limit, lambda row: ITEM_ADAPTER.validate_python(row["data"])
        )
        page.data = [self._present_item(item, context) for item in page.data]
        return page

    async def add_thread_item(
        self, thread_id: str, item: ThreadItem, context: RequestContext
    ) -> None:
        # An upsert: the SDK re-adds a workflow it continues, with the same id and more tasks.
        await self._upsert_item(thread_id, item, context)

    async def save_item(self, thread_id: str, item: ThreadItem, context: RequestContext) -> None:
        await self._upsert_item(thread_id, item, context)

    async def load_item(self, thread_id: str, item_id: str, context: RequestContext) -> ThreadItem:
        stmt = select(ItemRow.data).where(
            ItemRow.id == item_id,
            ItemRow.thread_id == thread_id,
            ItemRow.user_id == context.user_id,
        )
        data = await self._owned(stmt, f"Item {item_id} not found in thread {thread_id}")
        return self._present_item(ITEM_ADAPTER.validate_python(data), context)

    async def check_items(self, thread_id: str, item_ids: list[str], user_id: str) -> None:
        """Raise `NotFoundError` unless every item is in the caller's thread."""
        wanted = set(item_ids)
        stmt = select(ItemRow.id).where(
            ItemRow.id.in_(wanted), ItemRow.thread_id == thread_id, ItemRow.user_id == user_id
        )
        async with self._single.connect() as conn:
            found = set((await conn.execute(stmt)).scalars())
        if missing := sorted(wanted - found):
            raise NotFoundError(f"Item {missing[0]} not found in thread {thread_id}")

    def remember_thread(self, thread: ThreadMetadata, context: RequestContext) -> None:
        """Answer the next read of `thread`, in this task, with it: once, and only until the
        thread is written. A turn reads its thread as it takes the thread's lock (at once, not
        one after the other), and the SDK reads it again next: call this in the turn's task."""
        THREAD_READ.set(KnownThread(context.user_id, thread))

    def remember_newest(
        self,
        thread_id: str,
        newest_first: list[ThreadItem],
        complete: bool,
        context: RequestContext,
    ) -> None:
        """Answer the next read of the thread's newest items, in this task, from `newest_first`.

        Once, and only until an item is written: the SDK's `stream_agent_response` starts by
        reading the two newest items, which the turn has just loaded with its history.
        """
        NEWEST_READ.set(NewestItems(context.user_id, thread_id, newest_first, complete))

    async def delete_thread_item(
        self, thread_id: str, item_id: str, context: RequestContext
    ) -> None:
        NEWEST_READ.set(None)
        stmt = delete(ItemRow).where(
            ItemRow.id == item_id,
            ItemRow.thread_id == thread_id,
            ItemRow.user_id == context.user_id,
        )
        async with self._single.connect() as conn:
            await conn.execute(stmt)

    # attachments

    async def save_attachment(self, attachment: Attachment, context: RequestContext) -> None:
        row = {
            "id": attachment.id,
            "user_id": context.user_id,
            "thread_id": attachment.thread_id,
            "created_at": utcnow(),
            "data": attachment.model_dump(mode="json"),
        }
        await self._upsert(self._upsert_attachment, row, f"Attachment {attachment.id} not found")

    async def load_attachment(self, attachment_id: str, context: RequestContext) -> Attachment:
        stmt = select(AttachmentRow.data).where(
            AttachmentRow.id == attachment_id, AttachmentRow.user_id == context.user_id
        )
        data = await self._owned(stmt, f"Attachment {attachment_id} not found")
        return self._present_attachment(ATTACHMENT_ADAPTER.validate_python(data), context)

    async def delete_attachment(self, attachment_id: str, context: RequestContext) -> None:
        """Delete the caller's attachment and its content; anything else is a no-op."""
        stmt = delete(AttachmentRow).where(
            AttachmentRow.id == attachment_id, AttachmentRow.user_id == context.user_id
        )
        async with self._single.connect() as conn:
            result = await conn.execute(stmt)
        if self.files is not None and result.rowcount:
            await self.files.delete([attachment_id])
        if self.attachments_deleted is not None and result.rowcount:
            await self.attachments_deleted(context.user_id, [attachment_id])

    # attachments, beyond the SDK's hooks: uploads, signed links, cleanup

    async def find_attachment(self, attachment_id: str) -> tuple[Attachment, str] | None:
        """The attachment and its owner, whoever asks: for routes that check a signature."""
        stmt = select(AttachmentRow.data, AttachmentRow.user_id).where(
            AttachmentRow.id == attachment_id
        )
        async with self._single.connect() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            return None
        return ATTACHMENT_ADAPTER.validate_python(row.data), row.user_id

    async def owns_attachment(self, attachment_id: str, owner: str) -> bool:
        stmt = select(AttachmentRow.id).where(
            AttachmentRow.id == attachment_id, AttachmentRow.user_id == owner
        )
        async with self._single.connect() as conn:
            return (await conn.execute(stmt)).scalar_one_or_none() is not None

    async def replace_attachment(
        self, attachment: Attachment, owner: str, *, pending: bool
    ) -> bool:
        """Store `attachment` as its record, only if the record is (or is not) still pending.

        One conditional UPDATE: of two uploads claiming the same pending record, one wins.
        """
        stmt = (
            update(AttachmentRow)
            .where(
                AttachmentRow.id == attachment.id,
                AttachmentRow.user_id == owner,
                PENDING if pending else ~PENDING,
            )
            .values(data=attachment.model_dump(mode="json"))
        )
        async with self._single.connect() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def delete_pending_attachment(self, attachment_id: str, owner: str) -> None:
        """Delete the record (and bytes) only while it is pending: a refused upload must not
        remove what a concurrent one stored."""
        stmt = delete(AttachmentRow).where(
            AttachmentRow.id == attachment_id, AttachmentRow.user_id == owner, PENDING
        )
        async with self._single.connect() as conn:
            deleted = (await conn.execute(stmt)).rowcount
        if self.files is not None and deleted:
            await self.files.delete([attachment_id])

    async def delete_orphan_attachments(self, older_than: timedelta) -> int:
        """Delete uploads never attached to a message (no thread) older than `older_than`."""
        cutoff = utcnow() - older_than
        deleted = 0
        while True:
            batch = (
                select(AttachmentRow.id)
                .where(AttachmentRow.thread_id.is_(None), AttachmentRow.created_at < cutoff)
                .limit(CLEANUP_BATCH_SIZE)
            )
            stmt = (
                delete(AttachmentRow).where(AttachmentRow.id.in_(batch)).returning(AttachmentRow.id)
            )
            async with self.engine.begin() as conn:
                ids = list((await conn.execute(stmt)).scalars())
            if self.files is not None:
                await self.files.delete(ids)
            deleted += len(ids)
            if len(ids) < CLEANUP_BATCH_SIZE:
                return deleted

    # helpers

    def _present_attachment(self, attachment: Attachment, context: RequestContext) -> Attachment:
        if self.attachment_urls is None:
            return attachment
        return self.attachment_urls.with_fresh_preview(
            attachment, context.user_id, context.base_url
        )

    def _present_item(self, item: ThreadItem, context: RequestContext) -> ThreadItem:
        """A user message with freshly signed preview URLs for its image attachments."""
        if not isinstance(item, UserMessageItem) or not item.attachments:
            return item
        attachments = [self._present_attachment(a, context) for a in item.attachments]
        return item.model_copy(update={"attachments": attachments})

    async def _upsert_item(self, thread_id: str, item: ThreadItem, context: RequestContext) -> None:
        """See `item_upsert`: another user's thread or item is a `NotFoundError`."""
        NEWEST_READ.set(None)
        params = {
            "p_id": item.id,
            "p_type": item.type,
            "p_created_at": sort_key(item.created_at),
            "p_data": item.model_dump(mode="json"),
            "p_thread_id": thread_id,
            "p_user_id": context.user_id,
        }
        await self._upsert(self._upsert_item_stmt, params, f"Thread {thread_id} not found")

    async def _owned(self, stmt: Select[Any], missing: str) -> Any:
        """The one value the statement selects from the caller's rows, else `NotFoundError`."""
        async with self._single.connect() as conn:
            data = (await conn.execute(stmt)).scalar_one_or_none()
        if data is None:
            raise NotFoundError(missing)
        return data

    async def _upsert(self, stmt: Prepared, row: dict[str, Any], missing: str) -> None:
        """Run an upsert that proves ownership in its statement: no row written is `missing`."""
        if await self._single.rowcount(stmt, row) == 0:
            raise NotFoundError(missing)

    async def _page(
        self,
        stmt: Prepared,
        params: dict[str, Any],
        limit: int,
        parse: Callable[[Row], T],
    ) -> Page[T]:
        """Fetch one row more than the page to learn `has_more` without counting (`stmt` is
        `_keyset`'s, whose limit is the `p_limit` parameter)."""
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        rows = await self._single.rows(stmt, {**params, "p_limit": limit + 1})
        has_more = len(rows) > limit
        rows = rows[:limit]
        return Page(
            data=[parse(row) for row in rows],
            has_more=has_more,
            after=rows[-1]["id"] if has_more else None,
        )


def _newest_known(thread_id: str, limit: int, context: RequestContext) -> Page[ThreadItem] | None:
    """The `limit` newest items of the caller's thread from what `remember_newest` kept, if it
    kept them; forgotten now either way."""
    known = NEWEST_READ.get()
    if known is None:
        return None
    NEWEST_READ.set(None)
    if known.user_id != context.user_id or known.thread_id != thread_id:
        return None
    if not 1 <= limit <= MAX_PAGE_SIZE or (limit > len(known.items) and not known.complete):
        return None
    has_more = len(known.items) > limit or not known.complete
    data = known.items[:limit]
    return Page(data=data, has_more=has_more, after=data[-1].id if has_more else None)


def _with_lock(stmt: Select[Any], user_id: Any, now: Any) -> Select[Any]:
    """`stmt` with the reason of the thread's unexpired turn lock, if any, as `lock`."""
    live = (
        (TurnLockRow.user_id == user_id)
        & (TurnLockRow.thread_id == ThreadRow.id)
        & (TurnLockRow.expires_at > now)
    )
    return stmt.add_columns(TurnLockRow.reason.label("lock")).outerjoin(TurnLockRow, live)


def _thread(row: Row) -> ThreadMetadata:
    """A thread row as the SDK's model; an active thread a turn holds reads as locked."""
    thread = ThreadMetadata.model_validate(row["data"])
    if row["lock"] is not None and isinstance(thread.status, ActiveStatus):
        thread.status = LockedStatus(reason=row["lock"])
    return thread


def owned_upsert(
    insert: Any, table: type[ThreadRow] | type[AttachmentRow], update: list[str]
) -> Any:
    """Insert a row, or update `update` of an existing row only if the same user owns it."""
    return insert.on_conflict_do_update(
        index_elements=[table.id],
        set_={name: insert.excluded[name] for name in update},
        where=table.user_id == insert.excluded.user_id,
    )


def item_upsert(insert: Callable[[Any], Any]) -> Any:
    """Insert or update an item in one statement that also proves the thread is the caller's.

    The values come through the caller's thread row, so no row exists for another user's
    thread; on conflict only the same user's item in the same thread is updated, and its
    `created_at` is kept, so an item never moves in its thread.
    """
    source = select(
        bindparam("p_id", type_=ItemRow.id.type),
        ThreadRow.id,
        ThreadRow.user_id,
        bindparam("p_type", type_=ItemRow.type.type),
        bindparam("p_created_at", type_=ItemRow.created_at.type),
        bindparam("p_data", type_=ItemRow.data.type),
    ).where(ThreadRow.id == bindparam("p_thread_id"), ThreadRow.user_id == bindparam("p_user_id"))
    stmt = insert(ItemRow).from_select(
        ["id", "thread_id", "user_id", "type", "created_at", "data"], source
    )
    return stmt.on_conflict_do_update(
        index_elements=[ItemRow.id],
        set_={"data": stmt.excluded.data, "type": stmt.excluded.type},
        where=(ItemRow.user_id == stmt.excluded.user_id)
        & (ItemRow.thread_id == stmt.excluded.thread_id),
    )


def _keyset(
    stmt: Select[Any],
    table: type[ThreadRow] | type[ItemRow],
    after: str | None,
    cursor_created_at: Any,
    order: str,
) -> Select[Any]:
    """Order by `(created_at, id)`, start strictly after the cursor row, and stop at the
    `p_limit` parameter's number of rows.

    An `after` that names no row of the caller's yields an empty page (its subquery is NULL).
    """
    key = tuple_(table.created_at, table.id)
    if order == "desc":
        if after:
            stmt = stmt.where(key < tuple_(cursor_created_at, after))
        stmt = stmt.order_by(table.created_at.desc(), table.id.desc())
    else:
        if after:
            stmt = stmt.where(key > tuple_(cursor_created_at, after))
        stmt = stmt.order_by(table.created_at.asc(), table.id.asc())
    return stmt.limit(bindparam("p_limit"))


# The statements every turn runs, built once (building one costs more CPU than sending it),
# with the caller and the thread as the parameters `p_user` and `p_thread`.
THREAD = (
    _with_lock(select(ThreadRow.data), bindparam("p_user"), bindparam("p_now"))
    .add_columns(TurnLockRow.turn_id.label("lock_turn"))
    .where(ThreadRow.id == bindparam("p_thread"), ThreadRow.user_id == bindparam("p_user"))
)
OWNED_ITEMS = (ItemRow.thread_id == bindparam("p_thread"), ItemRow.user_id == bindparam("p_user"))
ITEMS = select(ItemRow.id, ItemRow.data).where(*OWNED_ITEMS)
NEWEST_ITEMS = _keyset(ITEMS, ItemRow, None, None, "desc")
OLDEST_ITEMS = _keyset(ITEMS, ItemRow, None, None, "asc")
