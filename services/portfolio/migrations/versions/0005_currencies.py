"""Currencies: each trade keeps its trading currency, the rate into its portfolio's currency on
its date and its price and fees as given; dividends paid by the simulated market are noted once
per portfolio, symbol and ex-date. Exchange rates are daily closes in price_history, keyed by
the pair ("EUR/USD"), which no symbol can spell.

Revision ID: 0005_currencies
Revises: 0004_orders
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.runtime.sqltypes import ExactDecimal

revision: str = "0005_currencies"
down_revision: str | None = "0004_orders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing trades keep "" and NULL: in their portfolio's currency, at a rate of 1.
    with op.batch_alter_table("trades") as batch:
        batch.add_column(sa.Column("currency", sa.String(3), nullable=False, server_default=""))
        batch.add_column(sa.Column("fx_rate", ExactDecimal(), nullable=True))
        batch.add_column(sa.Column("local_price", ExactDecimal(), nullable=True))
        batch.add_column(sa.Column("local_fees", ExactDecimal(), nullable=True))
    op.create_table(
        "dividend_payouts",
        sa.Column(
            "portfolio_id",
            sa.String(36),
            sa.ForeignKey("portfolios.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("symbol", sa.String(16), primary_key=True),
        sa.Column("ex_date", sa.Date(), primary_key=True),
        sa.Column("trade_id", sa.String(36), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dividend_payouts")
    with op.batch_alter_table("trades") as batch:
        batch.drop_column("local_fees")
        batch.drop_column("local_price")
        batch.drop_column("fx_rate")
        batch.drop_column("currency")
