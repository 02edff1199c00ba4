"""Stock splits a portfolio records, replayed with its trades.

Revision ID: 0006_portfolio_splits
Revises: 0005_currencies
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.runtime.sqltypes import ExactDecimal, UtcDateTime

revision: str = "0006_portfolio_splits"
down_revision: str | None = "0005_currencies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "portfolio_splits",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "portfolio_id",
            sa.String(36),
            sa.ForeignKey("portfolios.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("symbol", sa.String(16), nullable=False),
        sa.Column("effective_date", sa.Date(), nullable=False),
        sa.Column("numerator", sa.Integer(), nullable=False),
        sa.Column("denominator", sa.Integer(), nullable=False),
        sa.Column("price", ExactDecimal(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint(
            "portfolio_id", "symbol", "effective_date", name="uq_portfolio_splits_symbol_date"
        ),
    )


def downgrade() -> None:
    op.drop_table("portfolio_splits")
