"""Savings plans of paper portfolios and the runs of their dates.

Revision ID: 0009_savings_plans
Revises: 0008_portfolio_targets
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.runtime.sqltypes import ExactDecimal, UtcDateTime

revision: str = "0009_savings_plans"
down_revision: str | None = "0008_portfolio_targets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "savings_plans",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("portfolio_id", sa.String(36), nullable=False),
        sa.Column("symbol", sa.String(16), nullable=False),
        sa.Column("amount", ExactDecimal(), nullable=False),
        sa.Column("every", sa.String(8), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("fractional", sa.Boolean(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["portfolio_id"],
            ["portfolios.id"],
            name="fk_savings_plans_portfolio_id_portfolios",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_savings_plans"),
    )
    op.create_index(
        "ix_savings_plans_portfolio_id", "savings_plans", ["portfolio_id", "created_at"]
    )
    op.create_table(
        "savings_plan_runs",
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.Column("run_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("trade_id", sa.String(36), nullable=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("quantity", ExactDecimal(), nullable=True),
        sa.Column("price", ExactDecimal(), nullable=True),
        sa.Column("ran_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["savings_plans.id"],
            name="fk_savings_plan_runs_plan_id_savings_plans",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("plan_id", "run_date", name="pk_savings_plan_runs"),
    )


def downgrade() -> None:
    op.drop_table("savings_plan_runs")
    op.drop_index("ix_savings_plans_portfolio_id", table_name="savings_plans")
    op.drop_table("savings_plans")
