"""The portfolio service's tables. Decimals are stored exactly and times in UTC
(services.runtime.sqltypes), on SQLite as on PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from services.runtime.account_deletions import account_purge_cursor_table
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
    # The order this trade filled ("" for a trade recorded by hand).
    Column("order_id", String(36), nullable=False, default="", server_default=""),
    # The trade as given, in its trading currency, and the rate into the portfolio's currency
    # on its date (price and fees above are converted at it); NULL before currencies.
    Column("currency", String(3), nullable=False, default="", server_default=""),
    Column("fx_rate", ExactDecimal(), nullable=True),
    Column("local_price", ExactDecimal(), nullable=True),
    Column("local_fees", ExactDecimal(), nullable=True),
    UniqueConstraint("portfolio_id", "sequence", name="uq_trades_portfolio_id_sequence"),
    Index("ix_trades_portfolio_id_executed_at", "portfolio_id", "executed_at"),
    Index("ix_trades_portfolio_id_symbol", "portfolio_id", "symbol"),
)

# Stock splits a portfolio records (services.portfolio.splits): replayed with its trades, a
# split before the trades at its instant (the start of `effective_date`, UTC). One per symbol and
# day.
portfolio_splits = Table(
    "portfolio_splits",
    metadata,
    id_column(),
    reference_column("portfolio_id", "portfolios", ondelete="CASCADE"),
    Column("symbol", String(16), nullable=False),
    Column("effective_date", Date, nullable=False),
    Column("numerator", Integer, nullable=False),
    Column("denominator", Integer, nullable=False),
    Column("price", ExactDecimal(), nullable=True),
    created_at_column(),
    UniqueConstraint(
        "portfolio_id", "symbol", "effective_date", name="uq_portfolio_splits_symbol_date"
    ),
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

# Limit and stop orders of paper portfolios (services.portfolio.orders). Every change of status
# is a conditional update from "open", so an order ends once, whoever tries twice.
orders = Table(
    "orders",
    metadata,
    id_column(),
    owner_column(),
    reference_column("portfolio_id", "portfolios", ondelete="CASCADE"),
    Column("symbol", String(16), nullable=False),
    Column("side", String(16), nullable=False),
    Column("type", String(16), nullable=False),
    Column("quantity", ExactDecimal(), nullable=False),
    Column("limit_price", ExactDecimal(), nullable=True),
    Column("stop_price", ExactDecimal(), nullable=True),
    Column("time_in_force", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_reason", String(64), nullable=False, default=""),
    Column("triggered", Boolean, nullable=False, default=False),
    Column("trade_id", String(36), nullable=True),
    Column("filled_price", ExactDecimal(), nullable=True),
    Column("filled_at", UtcDateTime(), nullable=True),
    # The end of a DAY order's UTC day; NULL for GTC.
    Column("expires_at", UtcDateTime(), nullable=True),
    Column("fees", ExactDecimal(), nullable=False),
    Column("notes", Text, nullable=False, default=""),
    # The terms it was placed with, once a recorded split has adjusted it (orders.py); NULL:
    # its terms are those it was placed with.
    Column("placed_quantity", ExactDecimal(), nullable=True),
    Column("placed_limit_price", ExactDecimal(), nullable=True),
    Column("placed_stop_price", ExactDecimal(), nullable=True),
    created_at_column(),
    updated_at_column(),
    Index("ix_orders_user_id", "user_id", "created_at"),
    Index("ix_orders_portfolio_id_status", "portfolio_id", "status"),
    Index("ix_orders_status_expires_at", "status", "expires_at"),
)

# Dividends the market leader paid a paper portfolio: one per portfolio, symbol and ex-date,
# so a second leader (or a second round) never pays one twice.
dividend_payouts = Table(
    "dividend_payouts",
    metadata,
    reference_column("portfolio_id", "portfolios", ondelete="CASCADE"),
    Column("symbol", String(16), nullable=False),
    Column("ex_date", Date, nullable=False),
    Column("trade_id", String(36), nullable=False),
    PrimaryKeyConstraint("portfolio_id", "symbol", "ex_date"),
)

# Market splits the market leader recorded in a portfolio (services.portfolio.market_splits):
# one per portfolio, symbol and effective date, kept when the split is deleted, so a split is
# recorded once whoever tries, and one its owner took back is not recorded again.
market_split_notes = Table(
    "market_split_notes",
    metadata,
    reference_column("portfolio_id", "portfolios", ondelete="CASCADE"),
    Column("symbol", String(16), nullable=False),
    Column("effective_date", Date, nullable=False),
    Column("split_id", String(36), nullable=False),
    PrimaryKeyConstraint("portfolio_id", "symbol", "effective_date"),
)

idempotency_keys = idempotency_table(metadata)

# A user's named lists of symbols (services.portfolio.watchlists). `symbols` in the user's order,
# separated by spaces (a symbol has none).
watchlists = Table(
    "watchlists",
    metadata,
    id_column(),
    owner_column(),
    Column("name", String(100), nullable=False),
    Column("symbols", Text, nullable=False, default=""),
    created_at_column(),
    updated_at_column(),
    Index("ix_watchlists_user_id", "user_id", "created_at"),
)

# Price alerts (services.portfolio.alerts). `threshold`: the price of above/below, the signed
# percent of percent_change.
alerts = Table(
    "alerts",
    metadata,
    id_column(),
    owner_column(),
    Column("symbol", String(16), nullable=False),
    # "above", "below" or "percent_change" (alert_index.Condition).
    Column("condition", String(16), nullable=False),
    Column("threshold", ExactDecimal(), nullable=False),
    Column("window_seconds", Integer, nullable=False, default=0),
    Column("repeat", Boolean, nullable=False, default=False),
    Column("cooldown_seconds", Integer, nullable=False, default=0),
    Column("active", Boolean, nullable=False),
    Column("note", String(200), nullable=False, default=""),
    created_at_column(),
    Column("last_fired_at", UtcDateTime(), nullable=True),
    Index("ix_alerts_user_id", "user_id", "created_at"),
    # What a replica loads into its index at start: the active ones.
    Index("ix_alerts_active", "active", "symbol"),
)

# Each firing of an alert, kept after its alert is deleted (no foreign key): the user's history.
fired_alerts = Table(
    "fired_alerts",
    metadata,
    id_column(),
    owner_column(),
    Column("alert_id", String(36), nullable=False),
    Column("symbol", String(16), nullable=False),
    Column("condition", String(16), nullable=False),
    Column("threshold", ExactDecimal(), nullable=False),
    Column("price", ExactDecimal(), nullable=False),
    Column("fired_at", UtcDateTime(), nullable=False),
    Column("read", Boolean, nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_fired_alerts_user_id", "user_id", "fired_at"),
)

# A portfolio's target allocation (services.portfolio.allocations): a weight in percent per
# symbol, kept in the order its owner gave them (`position`). The rest of 100 is the cash target.
portfolio_targets = Table(
    "portfolio_targets",
    metadata,
    reference_column("portfolio_id", "portfolios", ondelete="CASCADE"),
    Column("symbol", String(16), nullable=False),
    Column("weight", ExactDecimal(), nullable=False),
    Column("position", Integer, nullable=False),
    PrimaryKeyConstraint("portfolio_id", "symbol"),
)

# Savings plans of paper portfolios (services.portfolio.plans): a recurring buy of `amount` (in
# the portfolio's currency) of a symbol every week or month from `start_date`.
savings_plans = Table(
    "savings_plans",
    metadata,
    id_column(),
    owner_column(),
    reference_column("portfolio_id", "portfolios", ondelete="CASCADE"),
    Column("symbol", String(16), nullable=False),
    Column("amount", ExactDecimal(), nullable=False),
    # "week" or "month" (plans.Frequency).
    Column("every", String(8), nullable=False),
    Column("start_date", Date, nullable=False),
    Column("fractional", Boolean, nullable=False),
    Column("paused", Boolean, nullable=False),
    created_at_column(),
    updated_at_column(),
    Index("ix_savings_plans_portfolio_id", "portfolio_id", "created_at"),
)

# What each run date of a plan did: one row per plan and date (the primary key), written in the
# transaction that records the run's trade, so a date is bought once whoever tries it twice.
savings_plan_runs = Table(
    "savings_plan_runs",
    metadata,
    reference_column("plan_id", "savings_plans", ondelete="CASCADE"),
    Column("run_date", Date, nullable=False),
    # "done" or "skipped" (plans.RunStatus).
    Column("status", String(8), nullable=False),
    Column("trade_id", String(36), nullable=True),
    Column("reason", String(64), nullable=False, default=""),
    Column("message", Text, nullable=False, default=""),
    Column("quantity", ExactDecimal(), nullable=True),
    Column("price", ExactDecimal(), nullable=True),
    Column("ran_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("plan_id", "run_date"),
)

# How far this service has erased deleted accounts (services/runtime/account_deletions.py).
purge_cursor = account_purge_cursor_table(metadata)
