"""The workspace service's tables: the index of every user's projects (their files live on disk)
and the idempotency keys of its creating RPCs."""

from __future__ import annotations

from sqlalchemy import Column, Index, MetaData, String, Table, UniqueConstraint

from services.runtime.idempotency import idempotency_table
from services.runtime.sqltypes import UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

projects = Table(
    "projects",
    metadata,
    Column("id", String(36), primary_key=True),
    # The owner: a user id from the users service (another database: no foreign key).
    Column("user_id", String(64), nullable=False),
    # Also the project's folder name under the owner's root.
    Column("name", String(100), nullable=False),
    Column("template", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("user_id", "name", name="uq_projects_user_id_name"),
    Index("ix_projects_user_id", "user_id", "created_at"),
)

idempotency_keys = idempotency_table(metadata)
