"""The assistant service's tables: folders, chat sessions and their messages (times in UTC,
services.runtime.sqltypes). PostgreSQL searches messages with a full-text (GIN) index that the
migration adds; SQLite has none and falls back to a portable match (repository.py)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from services.runtime.sqltypes import UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

folders = Table(
    "chat_folders",
    metadata,
    Column("id", String(36), primary_key=True),
    # The owner: a user id from the users service (another database: no foreign key).
    Column("user_id", String(64), nullable=False),
    Column("name", String(100), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_chat_folders_user_id", "user_id", "created_at"),
)

sessions = Table(
    "chat_sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(64), nullable=False),
    # Deleting a folder keeps its sessions: they leave the folder.
    Column(
        "folder_id",
        String(36),
        ForeignKey("chat_folders.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("title", String(200), nullable=False),
    Column("model", String(100), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_chat_sessions_user_id", "user_id", "updated_at"),
)

messages = Table(
    "chat_messages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "session_id",
        String(36),
        ForeignKey("chat_sessions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # The session's owner, repeated so search and the daily token count need no join.
    Column("user_id", String(64), nullable=False),
    # The order of messages within their session.
    Column("sequence", Integer, nullable=False),
    # "user" or "assistant".
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    # JSON: [{"id", "name", "input", "result", "is_error"}] (domain.ToolCall).
    Column("tool_calls", Text, nullable=False, default="[]"),
    Column("incomplete", Boolean, nullable=False, default=False),
    Column("model", String(100), nullable=False, default=""),
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_chat_messages_session_id", "session_id", "sequence", unique=True),
    Index("ix_chat_messages_user_id", "user_id", "created_at"),
)
