"""The quota's state every replica shares: each user's known usage, the log of changes made to
it, and the room writes under way hold (services/workspace/quota.py).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.runtime.sqltypes import UtcDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quota_usage",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.BigInteger(), nullable=False),
        sa.Column("scanned_at", UtcDateTime(), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_quota_usage"),
    )
    op.create_table(
        "quota_changes",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "seq", name="pk_quota_changes"),
    )
    op.create_index("ix_quota_changes_ended_at", "quota_changes", ["ended_at"])
    op.create_table(
        "quota_reservations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_quota_reservations"),
    )
    op.create_index("ix_quota_reservations_user_id", "quota_reservations", ["user_id"])
    op.create_index("ix_quota_reservations_expires_at", "quota_reservations", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_quota_reservations_expires_at", "quota_reservations")
    op.drop_index("ix_quota_reservations_user_id", "quota_reservations")
    op.drop_table("quota_reservations")
    op.drop_index("ix_quota_changes_ended_at", "quota_changes")
    op.drop_table("quota_changes")
    op.drop_table("quota_usage")
