"""The rebalancing rules (services/portfolio/rebalancing.py), without I/O: targets checked and
named by row, and the plan's promises held for any holdings, prices, cash and targets."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.portfolio.domain import Side
from services.portfolio.rebalancing import (
    NO_CASH,
    NO_PRICE,
    NO_TARGETS,
    ON_TARGET,
    Holding,
    Target,
    clean_targets,
    plan,
)
from services.runtime.errors import InvalidArgument

D = Decimal
SYMBOLS = ("AAA", "BBB", "CCC", "DDD")


def test_targets_are_upper_cased_and_kept_in_order() -> None:
    assert clean_targets([(" aapl ", "60"), ("msft", "39.9999")]) == (
        Target("AAPL", D("60")),
        Target("MSFT", D("39.9999")),
    )


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ([("A", "60"), ("B", "40.0001")], "targets"),
        ([("A", "1"), ("a", "1")], "targets[1].symbol"),
        ([("A", "0")], "targets[0].weight"),
        ([("A", "1"), ("B", "101")], "targets[1].weight"),
        ([("A", "1e1")], "targets[0].weight"),
        ([("", "1")], "targets[0].symbol"),
        ([(f"S{i}", "0.1") for i in range(101)], "targets"),
    ],
)
def test_bad_targets_name_their_row(raw: list[tuple[str, str]], field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        clean_targets(raw)
    assert [f for f, _ in refused.value.fields] == [field]


def test_a_buy_the_cash_cannot_pay_for_says_so() -> None:
    held = {
        "AAA": Holding("AAA", D(1), D(100), D(100)),
        "BBB": Holding("BBB", D(0), D(0), D(100)),
    }
    found = plan([Target("AAA", D(10)), Target("BBB", D(90))], held, D(50))
    aaa, bbb = found.lines
    # 150 in all: AAA 15 (85 over is 0.85 of a share: nothing sold whole), BBB wants 135,
    # a share and more, but 50 in cash buys none.
    assert (aaa.side, aaa.reason, bbb.side, bbb.reason) == (None, ON_TARGET, None, NO_CASH)
    assert found.cash_after == D(50)


def test_without_targets_nothing_is_suggested() -> None:
    """With no allocation set, the whole 100 % was the cash target: the Rebalance card of a
    portfolio whose owner had set nothing yet suggested selling every holding."""
    held = {
        "AAA": Holding("AAA", D(3), D(300), D(100)),
        "BBB": Holding("BBB", D("0.5"), D(50), D(100)),
    }
    found = plan([], held, D(10))
    assert [(x.symbol, x.side, x.trade_quantity, x.reason) for x in found.lines] == [
        ("AAA", None, D(0), NO_TARGETS),
        ("BBB", None, D(0), NO_TARGETS),
    ]
    assert found.cash_after == D(10)


def test_an_unpriced_holding_keeps_its_value_and_suggests_nothing() -> None:
    held = {"AAA": Holding("AAA", D(2), D(100), None)}
    found = plan([Target("AAA", D(50))], held, D(100))
    (line,) = found.lines
    assert (line.side, line.reason, found.total_value, found.weight(line.value)) == (
        None,
        NO_PRICE,
        D(200),
        D(50),
    )


prices = st.decimals(D("0.01"), D("2000"), places=2)
quantities = st.decimals(D(0), D("500"), places=3)


@st.composite
def portfolios(draw: st.DrawFn) -> tuple[list[Target], dict[str, Holding], Decimal, Decimal]:
    held: dict[str, Holding] = {}
    for symbol in draw(st.lists(st.sampled_from(SYMBOLS), unique=True)):
        quantity = draw(quantities.filter(lambda q: q > 0))
        price = draw(prices)
        held[symbol] = Holding(symbol, quantity, quantity * price, price)
    chosen = draw(st.lists(st.sampled_from(SYMBOLS), unique=True))
    weights = [draw(st.decimals(D("0.01"), D(100), places=2)) for _ in chosen]
    while sum(weights, D(0)) > 100:
        weights = [(w / 2).quantize(D("0.01")) or D("0.01") for w in weights]
    targets = [Target(s, w) for s, w in zip(chosen, weights, strict=True)]
    for symbol in chosen:
        if symbol not in held:
            held[symbol] = Holding(symbol, D(0), D(0), draw(prices))
    cash = draw(st.decimals(D(0), D(100000), places=2))
    extra = draw(st.decimals(D(0), D(10000), places=2))
    return targets, held, cash, extra


@settings(max_examples=300, deadline=None)
@given(portfolios(), st.booleans())
def test_a_plan_never_spends_cash_it_lacks_nor_trades_past_a_target(
    case: tuple[list[Target], dict[str, Holding], Decimal, Decimal], fractional: bool
) -> None:
    targets, held, cash, extra = case
    found = plan(targets, held, cash, extra_cash=extra, fractional=fractional)
    assert found.cash_after >= 0
    weights = {t.symbol: t.weight for t in targets}
    for line in found.lines:
        if line.side is None:
            continue
        assert line.trade_quantity > 0
        if not fractional and weights.get(line.symbol, D(0)) > 0:
            assert line.trade_quantity == line.trade_quantity.to_integral_value()
        goal = found.total_value * weights.get(line.symbol, D(0)) / 100
        if line.side is Side.SELL:
            assert line.trade_quantity <= line.quantity
            assert line.value_after >= goal - D("1e-20")
        else:
            assert line.value_after <= goal + D("1e-20")
    assert {line.symbol for line in found.lines} == {*held, *weights}
