"""The users service's tables."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    String,
    Table,
)

from services.runtime.orm import id_column, reference_column, service_metadata
from services.runtime.sqltypes import UtcDateTime

metadata = service_metadata()

users = Table(
    "users",
    metadata,
    id_column(),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    Column("password_hash", LargeBinary(128), nullable=False),
    # Comma-separated, from a closed set ("user", "admin").
    Column("roles", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_login", DateTime(timezone=True), nullable=True),
)

# A session is one login: every access and refresh token it issues carries its id.
sessions = Table(
    "sessions",
    metadata,
    id_column(),
    reference_column("user_id", "users", ondelete="CASCADE"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("revoked_reason", String(32), nullable=True),
    Column("client_address", String(64), nullable=False, default=""),
    Index("ix_sessions_user_id", "user_id"),
)

# Each refresh token is used once; presenting a used one revokes its session.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", String(64), primary_key=True),
    reference_column("session_id", "sessions", ondelete="CASCADE"),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    Index("ix_refresh_tokens_session_id", "session_id"),
)

# One-time facts decided by whoever inserts the row first (e.g. who became the first admin).
bootstrap = Table(
    "bootstrap",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(254), nullable=False),
)

# A tombstone per deleted account, written in the transaction that deletes it: what the other
# services follow (ListAccountDeletions) to erase what the account owned there. `sequence` is
# given in commit order (accounts.py: one deletion at a time takes the next number), so a
# follower that has seen a number has seen every one below it.
account_deletions = Table(
    "account_deletions",
    metadata,
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("user_id", String(64), nullable=False, unique=True),
    Column("deleted_at", UtcDateTime(), nullable=False),
)
