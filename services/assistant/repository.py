"""Loads and saves folders, sessions and messages; every query is scoped to one user.

Search: PostgreSQL full-text search (`websearch_to_tsquery` against the GIN index on
`to_tsvector('english', content)`), ranked; elsewhere (SQLite) a portable fallback in which
every word must appear in the message, case-insensitively, newest first.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
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
from sqlalchemy.ext.asyncio import AsyncSession

from services.assistant.domain import Folder, Message, Role, Session, ToolCall, Usage
from services.assistant.orm import folders, messages, sessions
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import NotFound
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
    calls = tuple(ToolCall.from_json(c) for c in json.loads(row.tool_calls or "[]"))
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
    tx: AsyncSession, table: Table, noun: str, user_id: str, row_id: str
) -> Row[Any]:
    """The row of `table` with `row_id` if `user_id` owns it; NotFound otherwise (someone
    else's is not found either)."""
    row = (
        await tx.execute(select(table).where(table.c.id == row_id, table.c.user_id == user_id))
    ).first()
    if row is None:
        raise NotFound(f"{noun} {row_id[:64]} not found", reason=f"{noun.upper()}_NOT_FOUND")
    return row


class Chats:
    """The assistant's repository."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- folders -------------------------------------------------------------------------------

    async def create_folder(self, user_id: str, name: str) -> Folder:
        folder = Folder(id=new_id(), user_id=user_id, name=name, created_at=utc_now())
        async with self._db.transaction() as tx:
            await tx.execute(
                folders.insert().values(
                    id=folder.id, user_id=user_id, name=name, created_at=folder.created_at
                )
            )
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

    async def _owned_session(self, tx: AsyncSession, user_id: str, session_id: str) -> Session:
        return _session(await _owned_row(tx, sessions, "session", user_id, session_id))

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
        async with self._db.transaction() as tx:
            await self._owned_session(tx, user_id, session_id)
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

    async def messages(self, user_id: str, session_id: str) -> list[Message]:
        async with self._db.reading() as tx:
            await self._owned_session(tx, user_id, session_id)
            rows = await tx.execute(
                select(messages)
                .where(messages.c.session_id == session_id)
                .order_by(messages.c.sequence)
            )
            return [_message(r) for r in rows]

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
        """Store `message` last in its session (the session must still be the user's)."""
        async with self._db.transaction() as tx:
            await self._owned_session(tx, user_id, message.session_id)
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

    @staticmethod
    async def _insert(tx: AsyncSession, user_id: str, message: Message, *, sequence: int) -> None:
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

    async def tokens_since(self, user_id: str, since: datetime) -> int:
        """Provider tokens the user's answers spent since `since`."""
        async with self._db.reading() as tx:
            total = (
                await tx.execute(
                    select(
                        func.coalesce(
                            func.sum(messages.c.input_tokens + messages.c.output_tokens), 0
                        )
                    ).where(messages.c.user_id == user_id, messages.c.created_at >= since)
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
