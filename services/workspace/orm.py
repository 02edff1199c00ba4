"""The workspace service's tables: the index of every user's projects (their files live on disk)
and the idempotency keys of its creating RPCs."""

from __future__ import annotations

from sqlalchemy import Column, Index, String, Table, UniqueConstraint

from services.runtime.idempotency import idempotency_table
from services.runtime.orm import (
    created_at_column,
    id_column,
    owner_column,
    service_metadata,
    updated_at_column,
)

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
