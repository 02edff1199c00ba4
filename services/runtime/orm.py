"""What every service's tables share: how constraints are named, the id key, the owner column
and the creation and update times (in UTC, services.runtime.sqltypes)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, MetaData, String

from services.runtime.sqltypes import UtcDateTime

# Explicit names, so each migration can name the constraints and indexes it alters.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
ID_LENGTH = 36


def service_metadata() -> MetaData:
    """A service's own metadata, its constraints named by NAMING_CONVENTION."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def id_column() -> Column[str]:
    """The primary key of an aggregate: a UUID in text."""
    return Column("id", String(ID_LENGTH), primary_key=True)


def reference_column(
    name: str, table: str, *, ondelete: str, nullable: bool = False
) -> Column[str]:
    """A foreign key to the id of a row of `table` in the same database."""
    return Column(
        name, String(ID_LENGTH), ForeignKey(f"{table}.id", ondelete=ondelete), nullable=nullable
    )


def owner_column() -> Column[str]:
    """The owner: a user id from the users service (another database: no foreign key)."""
    return Column("user_id", String(64), nullable=False)


def created_at_column() -> Column[datetime]:
    return Column("created_at", UtcDateTime(), nullable=False)


def updated_at_column() -> Column[datetime]:
    return Column("updated_at", UtcDateTime(), nullable=False)
