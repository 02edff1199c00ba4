"""The assistant's migration and repository on SQLite and PostgreSQL: the schema goes up, down
and up again; PostgreSQL gets its full-text index and stems words, SQLite matches substrings;
a deleted session takes its messages with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from services.assistant.domain import Message, Role, Session, Usage
from services.assistant.repository import Chats, new_id
from services.runtime.db import Database
from services.runtime.migrations import downgrade, upgrade
from services.runtime.pagination import Page


@pytest.fixture
def migrated(database_url: str) -> str:
    upgrade("assistant", database_url)
    downgrade("assistant", database_url)
    upgrade("assistant", database_url)
    return database_url


@pytest.fixture
async def chats(migrated: str) -> AsyncIterator[tuple[Chats, Database]]:
    db = Database(migrated)
    try:
        yield Chats(db), db
    finally:
        await db.close()


def _indexes(connection: Connection) -> set[str]:
    return {str(i["name"]) for i in inspect(connection).get_indexes("chat_messages")}


async def test_the_schema_migrates_up_down_and_up_with_search_indexed_on_postgresql(
    chats: tuple[Chats, Database],
) -> None:
    _, db = chats
    async with db.engine.connect() as connection:
        names = await connection.run_sync(_indexes)
        tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert {"chat_folders", "chat_sessions", "chat_messages"} <= tables
    assert {"ix_chat_messages_session_id", "ix_chat_messages_user_id"} <= names
    assert ("ix_chat_messages_search" in names) == (db.dialect == "postgresql")


async def test_search_stems_on_postgresql_and_matches_substrings_elsewhere(
    chats: tuple[Chats, Database],
) -> None:
    repository, _ = chats
    await repository.create_folder("u1", "unused")
    session = await _session(repository, "u1", "Dividends arrived from two holdings")
    await repository.add_message("u1", session, Role.ASSISTANT, "Reinvesting pays off.")
    found, total = await repository.search("u1", "dividend", ["dividend"], Page(1, 20))
    assert [m.content for m in found] == ["Dividends arrived from two holdings"]
    assert total == 1
    found, _ = await repository.search("u1", "reinvest", ["reinvest"], Page(1, 20))
    assert [m.content for m in found] == ["Reinvesting pays off."]
    # Only PostgreSQL knows `holding` and `holdings` are one word; SQLite finds it inside.
    found, _ = await repository.search("u1", "holding", ["holding"], Page(1, 20))
    assert len(found) == 1
    # LIKE wildcards are plain characters to the fallback (and to full-text search).
    found, _ = await repository.search("u1", "%", ["%"], Page(1, 20))
    assert found == []
    found, _ = await repository.search("u2", "dividend", ["dividend"], Page(1, 20))
    assert found == []


async def test_deleting_a_session_deletes_its_messages_and_spent_tokens_are_counted(
    chats: tuple[Chats, Database],
) -> None:
    repository, db = chats
    session = await _session(repository, "u1", "hello")
    await repository.add_message(
        "u1", session, Role.ASSISTANT, "hi", usage=Usage(input_tokens=30, output_tokens=12)
    )
    messages = await repository.messages("u1", session)
    assert [(m.role, m.content) for m in messages] == [
        (Role.USER, "hello"),
        (Role.ASSISTANT, "hi"),
    ]
    assert await repository.tokens_since("u1", messages[0].created_at) == 42
    await repository.delete_session("u1", session)
    async with db.engine.connect() as connection:
        left = (await connection.execute(text("SELECT count(*) FROM chat_messages"))).scalar()
    assert left == 0


async def _session(repository: Chats, user_id: str, first: str) -> str:
    now = datetime.now(UTC)
    session = Session(new_id(), user_id, None, "title", "model", now, now)
    await repository.start_session(session, Message(new_id(), session.id, Role.USER, first, now))
    return session.id
