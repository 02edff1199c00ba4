"""A portfolio's target allocation: a weight per symbol, for rebalancing.

Revision ID: 0008_portfolio_targets
Revises: 0007_order_split_terms
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.runtime.sqltypes import ExactDecimal

revision: str = "0008_portfolio_targets"
down_revision: str | None = "0007_order_split_terms"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "portfolio_targets",
        sa.Column(
            "portfolio_id",
            sa.String(36),
            sa.ForeignKey("portfolios.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("symbol", sa.String(16), nullable=False),
        sa.Column("weight", ExactDecimal(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("portfolio_id", "symbol"),
    )


def downgrade() -> None:
    op.drop_table("portfolio_targets")
