"""The portfolio's domain, one import away: no I/O, no clock (callers pass `now`), no framework.

Its rules live in three modules, each stating its own: `wire_numbers` (decimal strings in,
bounded; rounded once on the way out), `trading` (trades and splits, and wire input checked),
`book` (lots, positions and cash replayed from the trades; what it answers and keeps in
`book_values`, a holding's lots and sales in `holdings`). Most of the service imports them from
here.
"""

from __future__ import annotations

from services.portfolio.book import Book
from services.portfolio.book_values import (
    BookState,
    CashFlow,
    CashInLieu,
    CashPolicy,
    CostMethod,
    Event,
    HistoryMissing,
    HoldingState,
    InsufficientCash,
    InsufficientShares,
    Position,
    Sale,
    Totals,
    order_key,
)
from services.portfolio.lots import Lot, Lots
from services.portfolio.trading import (
    CLOCK_SKEW,
    MAX_NOTES,
    Side,
    Split,
    Trade,
    new_trade,
    normalize_symbol,
    parse_trade,
)
from services.portfolio.wire_numbers import (
    MAX_INPUT_LENGTH,
    MAX_INTEGER_DIGITS,
    MONEY_PLACES,
    ONE,
    PERCENT_PLACES,
    PRICE_PLACES,
    QUANTITY_PLACES,
    RATIO_PLACES,
    ZERO,
    parse_decimal,
    present_money,
    present_percent,
    present_price,
    present_quantity,
    present_ratio,
    present_sum,
    ratio,
)

__all__ = [
    "CLOCK_SKEW",
    "MAX_INPUT_LENGTH",
    "MAX_INTEGER_DIGITS",
    "MAX_NOTES",
    "MONEY_PLACES",
    "ONE",
    "PERCENT_PLACES",
    "PRICE_PLACES",
    "QUANTITY_PLACES",
    "RATIO_PLACES",
    "ZERO",
    "Book",
    "BookState",
    "CashFlow",
    "CashInLieu",
    "CashPolicy",
    "CostMethod",
    "Event",
    "HistoryMissing",
    "HoldingState",
    "InsufficientCash",
    "InsufficientShares",
    "Lot",
    "Lots",
    "Position",
    "Sale",
    "Side",
    "Split",
    "Totals",
    "Trade",
    "new_trade",
    "normalize_symbol",
    "order_key",
    "parse_decimal",
    "parse_trade",
    "present_money",
    "present_percent",
    "present_price",
    "present_quantity",
    "present_ratio",
    "present_sum",
    "ratio",
]
