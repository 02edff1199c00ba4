"""Each portfolio's book state on its row, so a trade no longer replays the whole book.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing portfolios keep NULL: the first trade of each builds its book by a replay.
    op.add_column("portfolios", sa.Column("book", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("portfolios") as batch:
        batch.drop_column("book")
