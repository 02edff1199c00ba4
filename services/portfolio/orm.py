"""The portfolio service's tables. Decimals are stored exactly and times in UTC
(services.runtime.sqltypes), on SQLite as on PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from services.runtime.idempotency import idempotency_table
from services.runtime.orm import (
    created_at_column,
    id_column,
    owner_column,
    reference_column,
    service_metadata,
    updated_at_column,
)
from services.runtime.sqltypes import ExactDecimal, UtcDateTime

metadata = service_metadata()

portfolios = Table(
    "portfolios",
    metadata,
    id_column(),
    owner_column(),
    Column("name", String(100), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("base_currency", String(3), nullable=False),
    # "tracking" or "paper" (records.PortfolioKind).
    Column("kind", String(16), nullable=False),
    created_at_column(),
    updated_at_column(),
    # The portfolio's book as of its latest trade (services.portfolio.book_states: JSON): what
    # recording one more trade starts from instead of replaying them all. On this row, which
    # every writer of trades locks, so a writer that waited for the lock reads the book its
    # predecessor left. NULL until the first trade recorded through the book (existing data).
    Column("book", Text, nullable=True),
    Index("ix_portfolios_user_id", "user_id", "created_at"),
)

trades = Table(
    "trades",
    metadata,
    id_column(),
    reference_column("portfolio_id", "portfolios", ondelete="CASCADE"),
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
    created_at_column(),
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
