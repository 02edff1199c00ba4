"""The portfolio service's tables. Decimals are stored exactly and times in UTC
(services.runtime.sqltypes), on SQLite as on PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from services.runtime.idempotency import idempotency_table
from services.runtime.sqltypes import ExactDecimal, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

portfolios = Table(
    "portfolios",
    metadata,
    Column("id", String(36), primary_key=True),
    # The owner: a user id from the users service (another database: no foreign key).
    Column("user_id", String(64), nullable=False),
    Column("name", String(100), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("base_currency", String(3), nullable=False),
    # "tracking" or "paper" (records.PortfolioKind).
    Column("kind", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_portfolios_user_id", "user_id", "created_at"),
)

trades = Table(
    "trades",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "portfolio_id",
        String(36),
        ForeignKey("portfolios.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # "" for deposits and withdrawals.
    Column("symbol", String(16), nullable=False),
    # domain.Side values: buy, sell, dividend, deposit, withdrawal.
    Column("side", String(16), nullable=False),
    Column("quantity", ExactDecimal(), nullable=False),
    Column("price", ExactDecimal(), nullable=False),
    Column("fees", ExactDecimal(), nullable=False),
    Column("executed_at", UtcDateTime(), nullable=False),
    # The order trades were recorded in, per portfolio: breaks ties of executed_at on replay.
    Column("sequence", Integer, nullable=False),
    Column("notes", Text, nullable=False, default=""),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("price_source", String(32), nullable=False, default=""),
    UniqueConstraint("portfolio_id", "sequence", name="uq_trades_portfolio_id_sequence"),
    Index("ix_trades_portfolio_id_executed_at", "portfolio_id", "executed_at"),
    Index("ix_trades_portfolio_id_symbol", "portfolio_id", "symbol"),
)

# Daily closes per symbol: fetched from the market for performance, and today's latest price
# recorded by the calculator.
price_history = Table(
    "price_history",
    metadata,
    Column("symbol", String(16), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("close", ExactDecimal(), nullable=False),
)

idempotency_keys = idempotency_table(metadata)
