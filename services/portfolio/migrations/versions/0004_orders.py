"""Limit and stop orders of paper portfolios, and the order a trade filled.

Revision ID: 0004_orders
Revises: 0003_watchlists_alerts
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.runtime.sqltypes import ExactDecimal, UtcDateTime

revision: str = "0004_orders"
down_revision: str | None = "0003_watchlists_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("portfolio_id", sa.String(36), nullable=False),
        sa.Column("symbol", sa.String(16), nullable=False),
        sa.Column("side", sa.String(16), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("quantity", ExactDecimal(), nullable=False),
        sa.Column("limit_price", ExactDecimal(), nullable=True),
        sa.Column("stop_price", ExactDecimal(), nullable=True),
        sa.Column("time_in_force", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.String(64), nullable=False),
        sa.Column("triggered", sa.Boolean(), nullable=False),
        sa.Column("trade_id", sa.String(36), nullable=True),
        sa.Column("filled_price", ExactDecimal(), nullable=True),
        sa.Column("filled_at", UtcDateTime(), nullable=True),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("fees", ExactDecimal(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["portfolio_id"],
            ["portfolios.id"],
            name="fk_orders_portfolio_id_portfolios",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
    )
    op.create_index("ix_orders_user_id", "orders", ["user_id", "created_at"])
    op.create_index("ix_orders_portfolio_id_status", "orders", ["portfolio_id", "status"])
    op.create_index("ix_orders_status_expires_at", "orders", ["status", "expires_at"])
    # "" for a trade no order filled (every trade before this revision).
    op.add_column("trades", sa.Column("order_id", sa.String(36), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("trades") as batch:
        batch.drop_column("order_id")
    op.drop_index("ix_orders_status_expires_at", table_name="orders")
    op.drop_index("ix_orders_portfolio_id_status", table_name="orders")
    op.drop_index("ix_orders_user_id", table_name="orders")
    op.drop_table("orders")
