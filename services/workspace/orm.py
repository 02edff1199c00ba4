"""The workspace service's tables: the index of every user's projects (their files live on disk),
the idempotency keys of its creating RPCs, and the quota's state every replica shares (each
user's known usage, the changes recently made to it, and the room writes under way hold)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
)

from services.runtime.account_deletions import account_purge_cursor_table
from services.runtime.idempotency import idempotency_table
from services.runtime.orm import (
    created_at_column,
    id_column,
    owner_column,
    service_metadata,
    updated_at_column,
)
from services.runtime.sqltypes import UtcDateTime

metadata = service_metadata()

projects = Table(
    "projects",
    metadata,
    id_column(),
    owner_column(),
    # Also the project's folder name under the owner's root.
    Column("name", String(100), nullable=False),
    Column("template", String(16), nullable=False),
    created_at_column(),
    updated_at_column(),
    UniqueConstraint("user_id", "name", name="uq_projects_user_id_name"),
    Index("ix_projects_user_id", "user_id", "created_at"),
)

idempotency_keys = idempotency_table(metadata)

# Per user folder (named by its user id): the best-known usage, what the scan behind it began
# (NULL: measure again before trusting it, after a change of unknown size), and the number of
# the last change counted in it (the change log's sequence, per folder).
quota_usage = Table(
    "quota_usage",
    metadata,
    owner_column(),
    Column("bytes", BigInteger, nullable=False),
    Column("files", BigInteger, nullable=False),
    Column("scanned_at", UtcDateTime(), nullable=True),
    Column("seq", Integer, nullable=False),
    PrimaryKeyConstraint("user_id", name="pk_quota_usage"),
)

# Changes a replica completed (their number in the folder's sequence and their size): a scan
# that began before a change was counted reconciles against it. Kept for a while, then pruned.
quota_changes = Table(
    "quota_changes",
    metadata,
    owner_column(),
    Column("seq", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("files", BigInteger, nullable=False),
    Column("ended_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("user_id", "seq", name="pk_quota_changes"),
    Index("ix_quota_changes_ended_at", "ended_at"),
)

# Room writes under way hold, on any replica, until released or until their lease lapses (the
# replica holding them renews it while they last: a replica that died gives its room back).
quota_reservations = Table(
    "quota_reservations",
    metadata,
    id_column(),
    owner_column(),
    Column("bytes", BigInteger, nullable=False),
    Column("files", BigInteger, nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Index("ix_quota_reservations_user_id", "user_id"),
    Index("ix_quota_reservations_expires_at", "expires_at"),
)

# How far this service has erased deleted accounts (services/runtime/account_deletions.py).
purge_cursor = account_purge_cursor_table(metadata)
