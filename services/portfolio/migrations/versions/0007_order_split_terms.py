"""Orders keep the terms they were placed with once a recorded split adjusts them.

Revision ID: 0007_order_split_terms
Revises: 0006_portfolio_splits
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.runtime.sqltypes import ExactDecimal

revision: str = "0007_order_split_terms"
down_revision: str | None = "0006_portfolio_splits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("placed_quantity", "placed_limit_price", "placed_stop_price")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("orders", sa.Column(name, ExactDecimal(), nullable=True))


def downgrade() -> None:
    # Batch mode: SQLite drops a column by copying the table.
    with op.batch_alter_table("orders") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
