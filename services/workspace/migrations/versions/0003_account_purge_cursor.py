"""How far this service has erased the data of deleted accounts: the sequence number of the
last account deletion (the users service's ListAccountDeletions) whose purge here committed.

Revision ID: 0003_account_purge_cursor
Revises: 0002
Create Date: 2027-01-12
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_account_purge_cursor"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_purge_cursor",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_account_purge_cursor"),
    )


def downgrade() -> None:
    op.drop_table("account_purge_cursor")
