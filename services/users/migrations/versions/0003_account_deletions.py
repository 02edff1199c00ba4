"""Account deletions: a tombstone per deleted account (its id, when, and a sequence number in
commit order), which the other services follow to erase what the account owned there.

Revision ID: 0003_account_deletions
Revises: 0002_normalized_emails
Create Date: 2027-01-12
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.runtime.sqltypes import UtcDateTime

revision: str = "0003_account_deletions"
down_revision: str | None = "0002_normalized_emails"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_deletions",
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("deleted_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name="pk_account_deletions"),
        sa.UniqueConstraint("user_id", name="uq_account_deletions_user_id"),
    )


def downgrade() -> None:
    op.drop_table("account_deletions")
