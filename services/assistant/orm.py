"""The assistant service's tables: folders, chat sessions and their messages (times in UTC,
services.runtime.sqltypes), the provider tokens each user spent per day, and the idempotency
keys of its creating RPCs (a folder, a message that starts a session). PostgreSQL
searches messages with a full-text (GIN) index that the migration adds; SQLite has none and
falls back to a portable match (repository.py)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from services.runtime.account_deletions import account_purge_cursor_table
from services.runtime.idempotency import idempotency_table
from services.runtime.orm import (
    created_at_column,
    id_column,
    owner_column,
    reference_column,
    service_metadata,
    updated_at_column,
)

metadata = service_metadata()

folders = Table(
    "chat_folders",
    metadata,
    id_column(),
    owner_column(),
    Column("name", String(100), nullable=False),
    created_at_column(),
    Index("ix_chat_folders_user_id", "user_id", "created_at"),
)

sessions = Table(
    "chat_sessions",
    metadata,
    id_column(),
    owner_column(),
    # Deleting a folder keeps its sessions: they leave the folder.
    reference_column("folder_id", "chat_folders", ondelete="SET NULL", nullable=True),
    Column("title", String(200), nullable=False),
    Column("model", String(100), nullable=False),
    created_at_column(),
    updated_at_column(),
    Index("ix_chat_sessions_user_id", "user_id", "updated_at"),
)

messages = Table(
    "chat_messages",
    metadata,
    id_column(),
    reference_column("session_id", "chat_sessions", ondelete="CASCADE"),
    # The session's owner, repeated so search and the daily token count need no join.
    owner_column(),
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
    created_at_column(),
    Index("ix_chat_messages_session_id", "session_id", "sequence", unique=True),
    Index("ix_chat_messages_user_id", "user_id", "created_at"),
)

# Provider tokens (input + output) each user spent per UTC day: what the daily budget is rebuilt
# from when the cache loses its total (budget.py). A ledger of its own, not the messages' counts:
# deleting a session (its messages) gives no tokens back, and an answer cut before its first word
# (no message stored) is counted too.
token_usage = Table(
    "chat_token_usage",
    metadata,
    owner_column(),
    Column("day", Date, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "day"),
)

idempotency_keys = idempotency_table(metadata)

# How far this service has erased deleted accounts (services/runtime/account_deletions.py).
purge_cursor = account_purge_cursor_table(metadata)
