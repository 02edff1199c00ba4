"""The rebalancing rules (services/portfolio/rebalancing.py), without I/O: targets checked and
named by row, and the plan's promises held for any holdings, prices, cash and targets; with
trading costs, the README's example worked by hand with fees and a minimum trade value."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.portfolio.domain import Side
from services.portfolio.rebalancing import (
    BELOW_MINIMUM,
    FEE_EXCEEDS_VALUE,
    NO_CASH,
    NO_PRICE,
    NO_TARGETS,
    ON_TARGET,
    Costs,
    Holding,
    Plan,
    Target,
    clean_targets,
    parse_costs,
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


# --- trading costs -----------------------------------------------------------------------------

SIXTY_FORTY = [Target("MSFT", D(60)), Target("AAPL", D(40))]


def sixty_forty_held() -> dict[str, Holding]:
    """The README's example: 10,000 deposited, 30 AAPL at 189.50 (5,685.00) and 5 MSFT at
    415.30 (2,076.50), 2,238.50 in cash."""
    return {
        "AAPL": Holding("AAPL", D(30), D("5685.00"), D("189.50")),
        "MSFT": Holding("MSFT", D(5), D("2076.50"), D("415.30")),
    }


def weight_after(found: Plan, value: Decimal) -> Decimal:
    weight = found.weight_after(value)
    assert weight is not None
    return weight


def test_fees_come_out_of_the_sells_proceeds_and_the_buys_cash() -> None:
    found = plan(SIXTY_FORTY, sixty_forty_held(), D("2238.50"), costs=Costs(D(5), D("0.1")))
    msft, aapl = found.lines
    # AAPL: 1,685 over its 4,000: 8 shares (1,516.00) as without fees; its fee is
    # 5 + 0.1 % of 1,516.00 = 6.516, 6.52 to the cent, so it brings 1,509.48.
    # 2,238.50 + 1,509.48 = 3,747.98 to spend.
    assert (aapl.side, aapl.trade_quantity, aapl.trade_value, aapl.fee) == (
        Side.SELL,
        D(8),
        D("1516.00"),
        D("6.52"),
    )
    # MSFT wants 3,923.50, which would cost 3,923.50 x 1.001 = 3,927.4235 with its percent fee.
    # Leaving room for one flat fee (5, and half a cent the rounding may add):
    # 3,747.98 - 5.005 = 3,742.975, which pays for 3,742.975 / 1.001 = 3,739.2358 of MSFT,
    # 9.0037 shares: 9 (3,737.70), fee 5 + 3.7377 = 8.74, 3,746.44 in all.
    assert (msft.side, msft.trade_quantity, msft.trade_value, msft.fee) == (
        Side.BUY,
        D(9),
        D("3737.70"),
        D("8.74"),
    )
    # 3,747.98 - 3,746.44 = 1.54 left (16.80 without fees); 6.52 + 8.74 = 15.26 of fees; the
    # portfolio is worth 10,000 - 15.26 = 9,984.74 afterwards.
    assert (found.cash_after, found.total_fees, found.total_value_after) == (
        D("1.54"),
        D("15.26"),
        D("9984.74"),
    )
    # Weights after are of 9,984.74: MSFT 2,076.50 + 3,737.70 = 5,814.20 is 58.2309 %, AAPL
    # 22 x 189.50 = 4,169.00 is 41.7537 %, the cash 0.0154 %; they add up to 100.
    assert round(weight_after(found, msft.value_after), 4) == D("58.2309")
    assert round(weight_after(found, aapl.value_after), 4) == D("41.7537")
    assert round(weight_after(found, found.cash_after), 4) == D("0.0154")
    shares = [weight_after(found, x.value_after) for x in found.lines]
    assert abs(sum(shares, weight_after(found, found.cash_after)) - 100) < D("1e-20")


def test_a_trade_worth_less_than_the_minimum_is_not_suggested_and_its_money_stays() -> None:
    costs = Costs(D(5), D("0.1"), minimum=D(1600))
    found = plan(SIXTY_FORTY, sixty_forty_held(), D("2238.50"), costs=costs)
    msft, aapl = found.lines
    # The AAPL sell, 1,516.00, is under 1,600: not suggested; only the 2,238.50 in cash pays for
    # MSFT. With room for one flat fee: (2,238.50 - 5.005) / 1.001 = 2,231.2637... or 5.37
    # shares: 5 (2,076.50, above 1,600), fee 5 + 2.0765 = 7.08 to the cent.
    assert (aapl.side, aapl.trade_quantity, aapl.fee, aapl.reason) == (
        None,
        D(0),
        D(0),
        BELOW_MINIMUM,
    )
    assert (msft.side, msft.trade_quantity, msft.trade_value, msft.fee) == (
        Side.BUY,
        D(5),
        D("2076.50"),
        D("7.08"),
    )
    # 2,238.50 - 2,076.50 - 7.08 = 154.92 left; worth 10,000 - 7.08 = 9,992.92 after.
    assert (found.cash_after, found.total_fees, found.total_value_after) == (
        D("154.92"),
        D("7.08"),
        D("9992.92"),
    )
    # AAPL unsold: 5,685 / 9,992.92 = 56.8903 %; MSFT 4,153.00 is 41.5594 %; cash 1.5503 %.
    assert round(weight_after(found, aapl.value_after), 4) == D("56.8903")
    assert round(weight_after(found, msft.value_after), 4) == D("41.5594")
    assert round(weight_after(found, found.cash_after), 4) == D("1.5503")


def test_a_buy_under_the_minimum_even_with_cash_for_all_of_it_says_below_minimum() -> None:
    held = {
        "AAA": Holding("AAA", D(0), D(0), D(10)),
        "BBB": Holding("BBB", D(0), D(0), D(10)),
    }
    found = plan(
        [Target("AAA", D(90)), Target("BBB", D(5))],
        held,
        D(1000),
        costs=Costs(minimum=D(100)),
    )
    aaa, bbb = found.lines
    # 1,000 in cash: AAA wants 900 (90 shares); BBB wants 50, under the 100 minimum.
    assert (aaa.side, aaa.trade_quantity, bbb.side, bbb.reason) == (
        Side.BUY,
        D(90),
        None,
        BELOW_MINIMUM,
    )
    assert (found.cash_after, found.total_fees) == (D(100), D(0))


def test_the_cut_leaves_room_for_the_flat_fee_of_every_buy_it_keeps() -> None:
    held = {s: Holding(s, D(0), D(0), D(1)) for s in ("AAA", "BBB", "CCC")}
    targets = [Target("AAA", D(50)), Target("BBB", D(30)), Target("CCC", D(20))]
    found = plan(targets, held, D(100), costs=Costs(per_trade=D(10)))
    # 100 in cash, all of it wanted (50 + 30 + 20) and a fee of 10 a trade. Room for one, two
    # fees: 90 or 80 left, cuts of 0.9 (45, 27, 18) or 0.8 (40, 24, 16) still place all three.
    # Room for three: 70 left, a cut of 0.7: 35, 21 and 14 shares, 70 + 3 x 10 = 100 spent.
    assert [(x.side, x.trade_quantity, x.fee) for x in found.lines] == [
        (Side.BUY, D(35), D(10)),
        (Side.BUY, D(21), D(10)),
        (Side.BUY, D(14), D(10)),
    ]
    assert (found.cash_after, found.total_fees) == (D(0), D(30))


def test_a_flat_fee_with_parts_of_a_cent_is_reserved_as_charged() -> None:
    held = {"AAA": Holding("AAA", D(0), D(0), D(1))}
    found = plan(
        [Target("AAA", D(100))], held, D(12), fractional=True, costs=Costs(per_trade=D("4.995"))
    )
    # A fee of 4.995 is charged as 5.00 (to the cent, half-even). Reserving only 4.995 would
    # leave 7.005 for 7.005 shares: 7.005 + 5.00 = 12.005, more than the 12 there is.
    # Reserving 5.00: the cut is 7 / 12 = 0.58333..., rounded down, so 12 x it is a hair under
    # 7: 6.99999999 shares, and 6.99999999 + 5.00 leaves 0.00000001.
    (line,) = found.lines
    assert (line.trade_quantity, line.fee, found.cash_after) == (
        D("6.99999999"),
        D("5.00"),
        D("0.00000001"),
    )


def test_a_trade_its_fee_would_eat_is_not_suggested() -> None:
    held = {
        "AAA": Holding("AAA", D(10), D(1000), D(100)),
        "DUST": Holding("DUST", D("0.03"), D(3), D(100)),
    }
    found = plan([Target("AAA", D(99))], held, D(0), costs=Costs(per_trade=D(5)))
    aaa, dust = found.lines
    # DUST, no target, would be sold off whole: 3.00 for a 5.00 fee brings less than nothing,
    # so it stays, and cash (0) never goes negative. AAA is 1,000 of 1,003 against 992.97:
    # 7.03 over, less than a share.
    assert (dust.side, dust.reason, aaa.reason) == (None, FEE_EXCEEDS_VALUE, ON_TARGET)
    assert (found.cash_after, found.total_fees) == (D(0), D(0))


def test_costs_are_read_from_the_request_and_bad_ones_named() -> None:
    assert parse_costs("", "", "") == Costs()
    assert parse_costs(" 4.95 ", "0.25", "100") == Costs(D("4.95"), D("0.25"), D(100))
    for raw, field in [
        (("-1", "", ""), "feePerTrade"),
        (("abc", "", ""), "feePerTrade"),
        (("0.0000001", "", ""), "feePerTrade"),
        (("", "100", ""), "feePercent"),
        (("", "-0.1", ""), "feePercent"),
        (("", "0.00001", ""), "feePercent"),
        (("", "1e1", ""), "feePercent"),
        (("", "", "-5"), "minTradeValue"),
        (("", "", "NaN"), "minTradeValue"),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            parse_costs(*raw)
        assert [f for f, _ in refused.value.fields] == [field], raw


costs = st.builds(
    Costs,
    st.decimals(D(0), D(50), places=6),
    st.decimals(D(0), D("99.9999"), places=4),
    st.decimals(D(0), D(5000), places=2),
)


@settings(max_examples=300, deadline=None)
@given(portfolios(), st.booleans(), costs)
def test_with_costs_the_cash_never_goes_negative_and_every_trade_is_worth_placing(
    case: tuple[list[Target], dict[str, Holding], Decimal, Decimal], fractional: bool, fees: Costs
) -> None:
    targets, held, cash, extra = case
    found = plan(targets, held, cash, extra_cash=extra, fractional=fractional, costs=fees)
    assert found.cash_after >= 0
    assert found.total_value_after == found.total_value - found.total_fees
    weights = {t.symbol: t.weight for t in targets}
    for line in found.lines:
        if line.side is None:
            assert line.fee == 0
            continue
        assert line.trade_value >= fees.minimum
        exact = fees.per_trade + line.trade_value * fees.percent / 100
        assert line.fee == exact.quantize(D("0.01"))  # half-even, the context's rounding
        assert line.fee < line.trade_value or line.fee == 0
        goal = found.total_value * weights.get(line.symbol, D(0)) / 100
        if line.side is Side.SELL:
            assert line.value_after >= goal - D("1e-20")
        else:
            assert line.value_after <= goal + D("1e-20")
