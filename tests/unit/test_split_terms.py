"""`split_terms` and the CSV split row (orders.py, imports.py): edges the README
states rules for."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import pytest

from services.portfolio.domain import Side
from services.portfolio.imports import read_rows
from services.portfolio.orders import Order, OrderStatus, OrderType, TimeInForce, split_terms
from services.portfolio.trading import Split
from services.runtime.errors import InvalidArgument

PLACED = datetime(2024, 1, 1, tzinfo=UTC)


def order(quantity: str, limit: str) -> Order:
    return Order(
        id="o",
        user_id="u",
        portfolio_id="p",
        symbol="X",
        side=Side.SELL,
        type=OrderType.LIMIT,
        quantity=Decimal(quantity),
        limit_price=Decimal(limit),
        stop_price=None,
        time_in_force=TimeInForce.GTC,
        status=OrderStatus.OPEN,
        created_at=PLACED,
        updated_at=PLACED,
        fees=Decimal(0),
    )


def test_shares_are_rounded_down_to_8_places_even_at_extreme_ratios() -> None:
    # README: "shares rounded down, so a sell never asks for more than the split holding".
    # Two 999,999-for-13 splits (each within MAX_TERM) of a sell of the largest quantity.
    sell = order("999999999999.99999999", "999999999999.999999")
    splits = [
        Split("X", Decimal(999999), datetime(2024, 2, 1, tzinfo=UTC), of=13),
        Split("X", Decimal(999999), datetime(2024, 3, 1, tzinfo=UTC), of=13),
    ]
    terms = split_terms(sell, splits)
    assert terms is not None
    exact = Fraction(sell.quantity) * Fraction(999999, 13) ** 2
    assert Fraction(terms.quantity) <= exact, (terms.quantity, float(exact))
    assert exact - Fraction(terms.quantity) < Fraction(1, 10**8)


NOW = datetime(2026, 12, 7, tzinfo=UTC)
HEADER = "date,side,symbol,quantity,price,fees,notes\n"


@pytest.mark.parametrize("ratio", ["\u0664:\u0661", "\uff14:\uff11"])  # Arabic-Indic, full-width
def test_a_split_ratio_is_ascii_digits_as_a_trade_quantity_is(ratio: str) -> None:
    # A trade row's quantity "\uff14" is refused (parse_decimal reads [0-9] only); the split
    # row's N:D ("two whole numbers") should be read the same way.
    with pytest.raises(InvalidArgument):
        read_rows(HEADER + "2024-01-02,buy,X,\uff14,10,,\n", now=NOW, max_rows=10)
    with pytest.raises(InvalidArgument):
        read_rows(HEADER + f"2024-06-10,split,X,{ratio},,,\n", now=NOW, max_rows=10)
