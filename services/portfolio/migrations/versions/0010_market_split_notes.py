"""Market splits recorded in portfolios, noted once per portfolio, symbol and effective date.

Revision ID: 0010_market_split_notes
Revises: 0009_savings_plans
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_market_split_notes"
down_revision: str | None = "0009_savings_plans"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "market_split_notes",
        sa.Column(
            "portfolio_id",
            sa.String(36),
            sa.ForeignKey("portfolios.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("symbol", sa.String(16), nullable=False),
        sa.Column("effective_date", sa.Date(), nullable=False),
        sa.Column("split_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("portfolio_id", "symbol", "effective_date"),
    )


def downgrade() -> None:
    op.drop_table("market_split_notes")
