"""Loads and saves folders, sessions and messages, and the tokens each user spent per day;
every query is scoped to one user.

Search: PostgreSQL full-text search (`websearch_to_tsquery` against the GIN index on
`to_tsvector('english', content)`), ranked; elsewhere (SQLite) a portable fallback in which
every word must appear in the message, case-insensitively, newest first.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Row,
    Select,
    Table,
    and_,
    delete,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.assistant.domain import (
    Folder,
    Message,
    Role,
    Session,
    ToolCall,
    Transcript,
    Usage,
    read_stored_json,
)
from services.assistant.orm import folders, messages, sessions, token_usage
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import InvalidArgument, NotFound
from services.runtime.pagination import Page
from services.runtime.queries import contains_text, fetch_page

SEARCH_CONFIG = "english"


def new_id() -> str:
    return str(uuid.uuid4())


def _folder(row: Any) -> Folder:
    return Folder(id=row.id, user_id=row.user_id, name=row.name, created_at=row.created_at)


def _session(row: Any) -> Session:
    return Session(
        id=row.id,
        user_id=row.user_id,
        folder_id=row.folder_id,
        title=row.title,
        model=row.model,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _message(row: Any) -> Message:
    calls = tuple(ToolCall.from_json(c) for c in read_stored_json(row.tool_calls or "[]"))
    return Message(
        id=row.id,
        session_id=row.session_id,
        role=Role(row.role),
        content=row.content,
        created_at=row.created_at,
        tool_calls=calls,
        incomplete=bool(row.incomplete),
        model=row.model,
        usage=Usage(row.input_tokens, row.output_tokens),
    )


async def _owned_row(
    tx: AsyncSession, table: Table, noun: str, user_id: str, row_id: str, *, lock: bool = False
) -> Row[Any]:
    """The row of `table` with `row_id` if `user_id` owns it; NotFound otherwise (someone
    else's is not found either). `lock`: held until the transaction ends (PostgreSQL; SQLite
    has one writer at a time anyway)."""
    query = select(table).where(table.c.id == row_id, table.c.user_id == user_id)
    row = (await tx.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        raise NotFound(f"{noun} {row_id[:64]} not found", reason=f"{noun.upper()}_NOT_FOUND")
    return row


class Chats:
    """The assistant's repository."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- folders -------------------------------------------------------------------------------

    async def create_folder(
        self,
        user_id: str,
        name: str,
        *,
        settle: Callable[[AsyncSession, Folder], Awaitable[None]] | None = None,
    ) -> Folder:
        """The new folder; `settle` commits with it, given it (a caller's Idempotency-Key)."""
        folder = Folder(id=new_id(), user_id=user_id, name=name, created_at=utc_now())
        async with self._db.transaction() as tx:
            await tx.execute(
                folders.insert().values(
                    id=folder.id, user_id=user_id, name=name, created_at=folder.created_at
                )
            )
            if settle is not None:
                await settle(tx, folder)
        return folder

    async def rename_folder(self, user_id: str, folder_id: str, name: str) -> Folder:
        async with self._db.transaction() as tx:
            await self._owned_folder(tx, user_id, folder_id)
            await tx.execute(update(folders).where(folders.c.id == folder_id).values(name=name))
            return await self._owned_folder(tx, user_id, folder_id)

    async def delete_folder(self, user_id: str, folder_id: str) -> None:
        """The folder goes; its sessions stay, in no folder."""
        async with self._db.transaction() as tx:
            await self._owned_folder(tx, user_id, folder_id)
            await tx.execute(
                update(sessions).where(sessions.c.folder_id == folder_id).values(folder_id=None)
            )
            await tx.execute(delete(folders).where(folders.c.id == folder_id))

    async def page_folders(self, user_id: str, page: Page) -> tuple[list[Folder], int]:
        """The user's folders, by name."""
        query = (
            select(folders)
            .where(folders.c.user_id == user_id)
            .order_by(folders.c.name, folders.c.id)
        )
        async with self._db.reading() as tx:
            rows, total = await fetch_page(tx, query, offset=page.offset, limit=page.limit)
            return [_folder(r) for r in rows], total

    async def _owned_folder(self, tx: AsyncSession, user_id: str, folder_id: str) -> Folder:
        return _folder(await _owned_row(tx, folders, "folder", user_id, folder_id))

    # --- sessions ------------------------------------------------------------------------------

    async def start_session(self, session: Session, first: Message) -> None:
        """Store a new session with the user's first message (one transaction)."""
        async with self._db.transaction() as tx:
            await tx.execute(
                sessions.insert().values(
                    id=session.id,
                    user_id=session.user_id,
                    folder_id=None,
                    title=session.title,
                    model=session.model,
                    created_at=session.created_at,
                    updated_at=session.updated_at,
                )
            )
            await self._insert(tx, session.user_id, first, sequence=1)

    async def session(self, user_id: str, session_id: str) -> Session:
        async with self._db.reading() as tx:
            return await self._owned_session(tx, user_id, session_id)

    async def _owned_session(
        self, tx: AsyncSession, user_id: str, session_id: str, *, lock: bool = False
    ) -> Session:
        return _session(await _owned_row(tx, sessions, "session", user_id, session_id, lock=lock))

    async def update_session(
        self, user_id: str, session_id: str, *, title: str | None, folder_id: str | None
    ) -> Session:
        """`folder_id`: None leaves it, "" takes the session out of its folder."""
        async with self._db.transaction() as tx:
            await self._owned_session(tx, user_id, session_id)
            values: dict[str, Any] = {"updated_at": utc_now()}
            if title is not None:
                values["title"] = title
            if folder_id is not None:
                if folder_id:
                    await self._owned_folder(tx, user_id, folder_id)
                values["folder_id"] = folder_id or None
            await tx.execute(update(sessions).where(sessions.c.id == session_id).values(**values))
            return await self._owned_session(tx, user_id, session_id)

    async def delete_session(self, user_id: str, session_id: str) -> None:
        """The session and its messages go; the tokens its answers spent stay counted."""
        async with self._db.transaction() as tx:
            await self._owned_session(tx, user_id, session_id, lock=True)
            await tx.execute(delete(messages).where(messages.c.session_id == session_id))
            await tx.execute(delete(sessions).where(sessions.c.id == session_id))

    async def page_sessions(
        self, user_id: str, page: Page, folder_id: str = ""
    ) -> tuple[list[Session], int]:
        """The user's sessions, most recently active first."""
        where = [sessions.c.user_id == user_id]
        async with self._db.reading() as tx:
            if folder_id:
                await self._owned_folder(tx, user_id, folder_id)
                where.append(sessions.c.folder_id == folder_id)
            query = (
                select(sessions).where(*where).order_by(sessions.c.updated_at.desc(), sessions.c.id)
            )
            rows, total = await fetch_page(tx, query, offset=page.offset, limit=page.limit)
            return [_session(r) for r in rows], total

    # --- messages ------------------------------------------------------------------------------

    async def messages(
        self, user_id: str, session_id: str, *, latest: int | None = None
    ) -> list[Message]:
        """The session's messages in order; with `latest`, only that many of the newest."""
        async with self._db.reading() as tx:
            await self._owned_session(tx, user_id, session_id)
            query = select(messages).where(messages.c.session_id == session_id)
            if latest is None:
                rows = list(await tx.execute(query.order_by(messages.c.sequence)))
            else:
                newest = query.order_by(messages.c.sequence.desc()).limit(latest)
                rows = list(await tx.execute(newest))[::-1]
            return [_message(r) for r in rows]

    async def transcript(
        self, user_id: str, session_id: str, *, limit: int, before: str = ""
    ) -> Transcript:
        """The session with its newest `limit` messages, or the newest of those written before
        the message `before` (of this session); read together, in one transaction."""
        async with self._db.reading() as tx:
            session = await self._owned_session(tx, user_id, session_id)
            query = select(messages).where(messages.c.session_id == session_id)
            if before:
                sequence = (
                    await tx.execute(
                        select(messages.c.sequence).where(
                            messages.c.session_id == session_id, messages.c.id == before
                        )
                    )
                ).scalar_one_or_none()
                if sequence is None:
                    raise InvalidArgument.field("before", "is not a message of this session")
                query = query.where(messages.c.sequence < sequence)
            newest = query.order_by(messages.c.sequence.desc()).limit(limit + 1)
            rows = list(await tx.execute(newest))
        return Transcript(session, [_message(r) for r in rows[:limit]][::-1], len(rows) > limit)

    async def add_message(
        self,
        user_id: str,
        session_id: str,
        role: Role,
        content: str,
        *,
        tool_calls: Sequence[ToolCall] = (),
        incomplete: bool = False,
        model: str = "",
        usage: Usage | None = None,
    ) -> Message:
        """Append a new message to a session (the session must still be the user's)."""
        message = Message(
            id=new_id(),
            session_id=session_id,
            role=role,
            content=content,
            created_at=utc_now(),
            tool_calls=tuple(tool_calls),
            incomplete=incomplete,
            model=model,
            usage=usage or Usage(),
        )
        await self.append(user_id, message)
        return message

    async def append(self, user_id: str, message: Message) -> None:
        """Store `message` last in its session (the session must still be the user's).

        The session's row is locked first, so messages written to one session at once (two
        tabs) queue for their sequence numbers, and a session deleted meanwhile is NotFound.
        Its tokens count even then: they were spent."""
        try:
            await self._append(user_id, message)
        except NotFound:
            await self.record_usage(user_id, message.created_at, message.usage.total)
            raise

    async def _append(self, user_id: str, message: Message) -> None:
        async with self._db.transaction() as tx:
            await self._owned_session(tx, user_id, message.session_id, lock=True)
            last = (
                await tx.execute(
                    select(func.max(messages.c.sequence)).where(
                        messages.c.session_id == message.session_id
                    )
                )
            ).scalar_one()
            await self._insert(tx, user_id, message, sequence=(last or 0) + 1)
            await tx.execute(
                update(sessions)
                .where(sessions.c.id == message.session_id)
                .values(updated_at=message.created_at)
            )

    async def _insert(
        self, tx: AsyncSession, user_id: str, message: Message, *, sequence: int
    ) -> None:
        """The message, and its tokens in the day's usage (one transaction)."""
        await tx.execute(
            messages.insert().values(
                id=message.id,
                session_id=message.session_id,
                user_id=user_id,
                sequence=sequence,
                role=message.role.value,
                content=message.content,
                tool_calls=json.dumps([c.as_json() for c in message.tool_calls]),
                incomplete=message.incomplete,
                model=message.model,
                input_tokens=message.usage.input_tokens,
                output_tokens=message.usage.output_tokens,
                created_at=message.created_at,
            )
        )
        await self._add_usage(tx, user_id, message.created_at, message.usage.total)

    # --- token usage ---------------------------------------------------------------------------

    async def record_usage(self, user_id: str, at: datetime, tokens: int) -> None:
        """Count `tokens` the user spent at `at` that no stored message carries (an answer cut
        before its first word, one whose session was deleted meanwhile)."""
        if tokens > 0:
            async with self._db.transaction() as tx:
                await self._add_usage(tx, user_id, at, tokens)

    async def _add_usage(self, tx: AsyncSession, user_id: str, at: datetime, tokens: int) -> None:
        if tokens <= 0:
            return
        module: Any = postgresql if self._db.dialect == "postgresql" else sqlite
        day = at.astimezone(UTC).date()
        statement = module.insert(token_usage).values(user_id=user_id, day=day, tokens=tokens)
        await tx.execute(
            statement.on_conflict_do_update(
                index_elements=[token_usage.c.user_id, token_usage.c.day],
                set_={"tokens": token_usage.c.tokens + statement.excluded.tokens},
            )
        )

    async def tokens_since(self, user_id: str, since: datetime) -> int:
        """Provider tokens the user spent on the UTC days from `since`'s on (sessions deleted
        since included)."""
        async with self._db.reading() as tx:
            total = (
                await tx.execute(
                    select(func.coalesce(func.sum(token_usage.c.tokens), 0)).where(
                        token_usage.c.user_id == user_id,
                        token_usage.c.day >= since.astimezone(UTC).date(),
                    )
                )
            ).scalar_one()
        return int(total)

    # --- search --------------------------------------------------------------------------------

    async def search(
        self, user_id: str, q: str, words: Sequence[str], page: Page
    ) -> tuple[list[Message], int]:
        if self._db.dialect == "postgresql":
            query = func.websearch_to_tsquery(literal_column(f"'{SEARCH_CONFIG}'"), q)
            vector = func.to_tsvector(literal_column(f"'{SEARCH_CONFIG}'"), messages.c.content)
            match: ColumnElement[bool] = vector.op("@@", return_type=Boolean)(query)
            order: Sequence[Any] = (
                func.ts_rank(vector, query).desc(),
                messages.c.created_at.desc(),
            )
        else:
            match = and_(*(contains_text(messages.c.content, w) for w in words))
            order = (messages.c.created_at.desc(),)
        where = (messages.c.user_id == user_id, match)
        found: Select[Any] = select(messages).where(*where).order_by(*order, messages.c.id)
        async with self._db.reading() as tx:
            rows, total = await fetch_page(tx, found, offset=page.offset, limit=page.limit)
            return [_message(r) for r in rows], total
