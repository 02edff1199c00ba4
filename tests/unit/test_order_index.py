"""The open-order index finds exactly the orders a price crosses, as a scan of every order
would (random orders and prices), and keeps the rest; the trigger rules of each order type."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.portfolio.domain import Side
from services.portfolio.order_index import OrderIndex
from services.portfolio.orders import (
    Order,
    OrderDraft,
    OrderStatus,
    OrderType,
    TimeInForce,
    parse_order,
)
from services.runtime.errors import InvalidArgument

WHEN = datetime(2026, 12, 6, 12, tzinfo=UTC)


def make(
    n: int, symbol: str, side: Side, kind: OrderType, level: str, triggered: bool = False
) -> Order:
    limit = Decimal(level) if kind is not OrderType.STOP else None
    stop = Decimal(level) if kind is not OrderType.LIMIT else None
    return Order(
        id=f"o{n:05d}",
        user_id="u",
        portfolio_id="p",
        symbol=symbol,
        side=side,
        type=kind,
        quantity=Decimal(1),
        limit_price=limit,
        stop_price=stop,
        time_in_force=TimeInForce.GTC,
        status=OrderStatus.OPEN,
        created_at=WHEN,
        updated_at=WHEN,
        triggered=triggered,
    )


@pytest.mark.parametrize(
    ("side", "kind", "triggered", "crossing", "not_crossing"),
    [
        (Side.BUY, OrderType.LIMIT, False, ["100", "99.99"], ["100.01"]),
        (Side.SELL, OrderType.LIMIT, False, ["100", "100.01"], ["99.99"]),
        (Side.BUY, OrderType.STOP, False, ["100", "100.01"], ["99.99"]),
        (Side.SELL, OrderType.STOP, False, ["100", "99.99"], ["100.01"]),
        (Side.BUY, OrderType.STOP_LIMIT, False, ["100", "100.01"], ["99.99"]),  # its stop
        (Side.BUY, OrderType.STOP_LIMIT, True, ["100", "99.99"], ["100.01"]),  # then its limit
    ],
)
def test_each_order_type_is_crossed_on_its_side_of_its_level(
    side: Side, kind: OrderType, triggered: bool, crossing: list[str], not_crossing: list[str]
) -> None:
    order = make(1, "KO", side, kind, "100", triggered)
    for price in crossing:
        assert order.crossed_by(Decimal(price))
        index = OrderIndex([order])
        assert index.take_crossed("KO", Decimal(price)) == [order]
        assert len(index) == 0
    for price in not_crossing:
        assert not order.crossed_by(Decimal(price))
        index = OrderIndex([order])
        assert index.take_crossed("KO", Decimal(price)) == []
        assert index.take_crossed("PEP", Decimal(price)) == []
        assert len(index) == 1


def test_the_index_takes_what_a_scan_would_and_keeps_the_rest() -> None:
    rng = random.Random(16)
    kinds = list(OrderType)
    orders = [
        make(
            n,
            rng.choice(("A", "B", "C")),
            rng.choice((Side.BUY, Side.SELL)),
            rng.choice(kinds),
            f"{rng.randint(9000, 11000) / 100:.2f}",
            triggered=rng.random() < 0.3,
        )
        for n in range(3000)
    ]
    index = OrderIndex(orders)
    open_ = {o.id: o for o in orders}
    for step in range(300):
        symbol = rng.choice(("A", "B", "C"))
        price = Decimal(f"{rng.randint(8900, 11100) / 100:.2f}")
        expected = {i for i, o in open_.items() if o.symbol == symbol and o.crossed_by(price)}
        taken = index.take_crossed(symbol, price)
        assert {o.id for o in taken} == expected
        for order_id in expected:
            del open_[order_id]
        if step % 10 == 0 and open_:  # a cancel
            gone = rng.choice(sorted(open_))
            assert index.remove(gone) is open_.pop(gone)
        assert len(index) == len(open_)
        assert set(o.id for o in index.orders()) == set(open_)


def test_a_draft_needs_the_prices_its_type_uses() -> None:
    def draft(**changes: object) -> OrderDraft:
        fields: dict[str, object] = {
            "portfolio_id": "p",
            "symbol": "ko",
            "side": Side.BUY,
            "type": OrderType.LIMIT,
            "quantity": "1",
            "limit_price": "10",
            **changes,
        }
        return OrderDraft(**fields)  # type: ignore[arg-type]

    order = parse_order(draft(), user_id="u", id="o", now=WHEN)
    assert order.symbol == "KO" and order.time_in_force is TimeInForce.DAY
    assert order.expires_at == datetime(2026, 12, 7, tzinfo=UTC)
    cases: list[tuple[dict[str, object], list[str]]] = [
        ({"limit_price": ""}, ["limitPrice"]),
        ({"type": OrderType.STOP}, ["limitPrice", "stopPrice"]),
        ({"type": OrderType.STOP_LIMIT, "limit_price": ""}, ["limitPrice", "stopPrice"]),
        ({"limit_price": "0"}, ["limitPrice"]),
        ({"quantity": "-1"}, ["quantity"]),
        ({"side": Side.DEPOSIT}, ["side"]),
        ({"fees": "1.1234567"}, ["fees"]),
    ]
    for changes, named in cases:
        with pytest.raises(InvalidArgument) as refused:
            parse_order(draft(**changes), user_id="u", id="o", now=WHEN)
        assert sorted(f for f, _ in refused.value.fields) == named, changes
