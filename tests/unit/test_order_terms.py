"""Which prices an order's type takes: a limit order a limit price, a stop order a stop price,
a stop-limit order both; a price its type does not take is refused, as is a missing one."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.portfolio.domain import Side
from services.portfolio.orders import OrderDraft, OrderType, parse_order
from services.runtime.errors import InvalidArgument

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def draft(type_: OrderType, limit: str = "", stop: str = "") -> OrderDraft:
    return OrderDraft("p1", "AAPL", Side.BUY, type_, "2", limit_price=limit, stop_price=stop)


def refused(order: OrderDraft) -> list[tuple[str, str]]:
    with pytest.raises(InvalidArgument) as caught:
        parse_order(order, user_id="u1", id="o1", now=NOW)
    return caught.value.fields


def test_each_type_keeps_the_prices_it_takes() -> None:
    limit = parse_order(draft(OrderType.LIMIT, limit="10.5"), user_id="u1", id="o1", now=NOW)
    assert (limit.limit_price, limit.stop_price) == (Decimal("10.5"), None)
    stop = parse_order(draft(OrderType.STOP, stop="9"), user_id="u1", id="o2", now=NOW)
    assert (stop.limit_price, stop.stop_price) == (None, Decimal("9"))
    both = parse_order(
        draft(OrderType.STOP_LIMIT, limit="10", stop="9.5"), user_id="u1", id="o3", now=NOW
    )
    assert (both.limit_price, both.stop_price) == (Decimal("10"), Decimal("9.5"))


def test_a_missing_price_and_a_price_the_type_does_not_take_are_both_named() -> None:
    assert refused(draft(OrderType.LIMIT, stop="9")) == [
        ("limitPrice", "is required for a limit order"),
        ("stopPrice", "must be empty for a limit order"),
    ]
    assert refused(draft(OrderType.STOP, limit="9")) == [
        ("limitPrice", "must be empty for a stop order"),
        ("stopPrice", "is required for a stop order"),
    ]
    assert refused(draft(OrderType.STOP_LIMIT)) == [
        ("limitPrice", "is required for a stop_limit order"),
        ("stopPrice", "is required for a stop_limit order"),
    ]


def test_a_price_the_type_does_not_take_is_also_checked_as_a_price() -> None:
    assert refused(draft(OrderType.LIMIT, limit="10", stop="0")) == [
        ("stopPrice", "must be empty for a limit order"),
        ("stopPrice", "must be greater than zero"),
    ]
