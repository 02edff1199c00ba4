"""Performance: value series, time-weighted return, XIRR, allocation, ranges, the report.

Reference cases are computed by hand in the comments; the code must agree with the arithmetic.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import pyxirr
from hypothesis import given, settings
from hypothesis import strategies as st

from services.portfolio import xirr as xirr_module
from services.portfolio.domain import Side, Trade, parse_trade, present_percent, present_ratio
from services.portfolio.performance import (
    CASH,
    ValuePoint,
    allocation,
    money_weighted_flows,
    money_weighted_return,
    performance_report,
    range_start,
    sub_period_return,
    time_weighted_return,
    value_series,
)
from services.portfolio.xirr import xirr, xnpv
from services.runtime.errors import InvalidArgument
from tests.utc_days import at

D = Decimal
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def point(day: date, value: str, inflow: str = "0", outflow: str = "0") -> ValuePoint:
    return ValuePoint(day, D(value), D(0), D(inflow), D(outflow))


def on(day: date, side: Side, symbol: str, quantity: str, price: str = "", fees: str = "") -> Trade:
    return parse_trade(side, symbol, quantity, price, fees, at(day), now=NOW)


def close_to(value: Decimal | None, expected: Decimal, within: str = "1e-20") -> bool:
    return value is not None and abs(value - expected) < D(within)


# --- time-weighted return ----------------------------------------------------------------------


def test_twr_chains_two_sub_periods_around_a_deposit() -> None:
    d0, d1, d2 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)
    points = [
        point(d0, "1000"),  # baseline: V0 = 1000
        point(d1, "1100"),  # r1 = 1100 / 1000 - 1 = 0.10
        point(d2, "1760", inflow="500"),  # r2 = 1760 / (1100 + 500) - 1 = 1760 / 1600 - 1 = 0.10
    ]
    # TWR = (1 + 0.10) * (1 + 0.10) - 1 = 0.21. The 500 deposited is not return: a naive
    # "gain over money in" would say (1760 - 1000 - 500) / 1500 = 17.3%.
    assert time_weighted_return(points) == D("0.21")


def test_twr_counts_a_withdrawal_at_the_end_of_its_day() -> None:
    d0, d1 = date(2024, 1, 1), date(2024, 1, 2)
    # r = (V1 + out) / V0 - 1 = (900 + 200) / 1000 - 1 = 0.10
    assert time_weighted_return([point(d0, "1000"), point(d1, "900", outflow="200")]) == D("0.1")


def test_twr_counts_a_deposit_at_the_start_of_its_day() -> None:
    # r = V1 / (V0 + in) - 1 = 1650 / (1000 + 500) - 1 = 0.10
    assert sub_period_return(D(1000), D(1650), D(500), D(0)) == D("0.1")


def test_twr_is_undefined_until_something_is_invested() -> None:
    days = [date(2024, 1, d) for d in (1, 2, 3)]
    assert time_weighted_return([]) is None
    assert time_weighted_return([point(days[0], "0")]) is None
    assert time_weighted_return([point(d, "0") for d in days]) is None
    assert sub_period_return(D(0), D(0), D(0), D(0)) is None


def test_days_with_nothing_invested_are_skipped_not_counted_as_zero() -> None:
    days = [date(2024, 1, d) for d in (1, 2, 3)]
    # Day 2 starts empty (0 + 0): skipped. Day 3: 1100 / (0 + 1000) - 1 = 0.10.
    points = [point(days[0], "0"), point(days[1], "0"), point(days[2], "1100", inflow="1000")]
    assert time_weighted_return(points) == D("0.1")


@settings(deadline=None)
@given(
    st.lists(st.decimals(min_value=D("-0.2"), max_value=D("0.2"), places=4), min_size=1),
    st.lists(st.decimals(min_value=D(0), max_value=D(100_000), places=2), min_size=1),
)
def test_twr_does_not_depend_on_the_size_or_timing_of_deposits(
    returns: list[Decimal], deposits: list[Decimal]
) -> None:
    # Deposits at the start of each day, then the day's return on everything invested:
    # the chained TWR is the product of the daily returns whatever was deposited.
    start = date(2024, 1, 1)
    points = [point(start, "1000")]
    for i, r in enumerate(returns):
        flow = deposits[i % len(deposits)]
        value = (points[-1].value + flow) * (1 + r)
        points.append(ValuePoint(start + timedelta(days=i + 1), value, D(0), flow, D(0)))
    expected = D(1)
    for r in returns:
        expected *= 1 + r
    assert close_to(time_weighted_return(points), expected - 1, within="1e-18")


# --- XIRR --------------------------------------------------------------------------------------


def test_xirr_of_ten_percent_over_exactly_one_year() -> None:
    # -1000 on 2023-01-01, +1100 on 2024-01-01 (365 days): 1100 / (1 + r) ** (365/365) = 1000
    # so 1 + r = 1.1 and r = 10%.
    result = xirr([(date(2023, 1, 1), D(-1000)), (date(2024, 1, 1), D(1100))])
    assert result.converged
    assert result.rate == D("0.1")
    assert result.method == "newton"


def test_xirr_with_two_deposits_a_year_apart() -> None:
    # -1000 on day 0, -1000 on day 365, +2310 on day 730. At r = 10%:
    #   -1000 - 1000 / 1.1 + 2310 / 1.21 = -1000 - 909.0909... + 1909.0909... = 0
    flows = [
        (date(2021, 1, 1), D(-1000)),
        (date(2022, 1, 1), D(-1000)),
        (date(2023, 1, 1), D(2310)),
    ]
    result = xirr(flows)
    assert result.converged
    assert result.rate == D("0.1")
    assert abs(xnpv(D("0.1"), flows)) < D("1e-20")


def test_xirr_with_irregular_flows_sets_the_net_present_value_to_zero() -> None:
    flows = [
        (date(2024, 1, 15), D(-10_000)),
        (date(2024, 4, 3), D(-2_500)),
        (date(2024, 9, 30), D(1_000)),
        (date(2025, 1, 15), D(13_000)),
    ]
    result = xirr(flows)
    assert result.converged and result.rate is not None
    # 12,500 in, 14,000 out within about a year: a positive rate, well under the 12% simple gain.
    assert D("0.05") < result.rate < D("0.15")
    assert abs(xnpv(result.rate, flows)) < D("1e-6")


def test_xirr_falls_back_to_bisection_when_newton_leaves_the_domain() -> None:
    # -100 then +1 a year later: r = 1/100 - 1 = -0.99. Newton from 10% steps to
    # 0.1 - (-99.09 / -0.826) = -119.8 < -1, outside the domain; bisection finds the root.
    result = xirr([(date(2023, 1, 1), D(-100)), (date(2024, 1, 1), D(1))])
    assert result.converged
    assert result.method == "bisection"
    assert close_to(result.rate, D("-0.99"), within="1e-9")


@pytest.mark.parametrize(
    "flows",
    [
        [],
        [(date(2024, 1, 1), D(-100)), (date(2024, 6, 1), D(-50))],
        [(date(2024, 1, 1), D(100))],
        # Same day: the flows net to +10 and no time passes.
        [(date(2024, 1, 1), D(-100)), (date(2024, 1, 1), D(110))],
    ],
)
def test_xirr_without_a_sign_change_says_so(flows: list[tuple[date, Decimal]]) -> None:
    result = xirr(flows)
    assert (result.converged, result.rate) == (False, None)
    assert "no sign change" in result.reason


def test_xirr_says_so_when_no_rate_exists() -> None:
    # +100, -100, +100 a year apart: with y = 1/(1+r), 100 - 100y + 100y^2 > 0 for every y.
    flows = [(date(2021, 1, 1), D(100)), (date(2022, 1, 1), D(-100)), (date(2023, 1, 1), D(100))]
    result = xirr(flows)
    assert (result.converged, result.rate) == (False, None)
    assert result.reason == "no rate sets the net present value to zero"


def test_xirr_declines_to_state_a_rate_too_close_to_minus_one_hundred_percent() -> None:
    # 2 put in over two days, 1 back a day later: half lost in days. With y = (1+r)^(-1/365):
    # -1 - y + y^2 = 0, y = 1.618..., so 1 + r = 1.618^-365 = 1e-76: no float can state it.
    flows = [(date(2020, 1, 1), D(-1)), (date(2020, 1, 2), D(-1)), (date(2020, 1, 3), D(1))]
    result = xirr(flows)
    assert (result.converged, result.rate) == (False, None)
    assert "too extreme to state" in result.reason


amounts = st.decimals(min_value=D(1), max_value=D(1_000_000), places=2)
offsets = st.integers(min_value=0, max_value=5 * 365)
flow_lists = st.lists(st.tuples(offsets, amounts.map(lambda a: -a) | amounts), max_size=6)


@settings(deadline=None)
@given(amounts, flow_lists, offsets, amounts)
def test_xirr_rate_makes_the_net_present_value_zero_when_converged(
    first: Decimal, others: list[tuple[int, Decimal]], final_day: int, final: Decimal
) -> None:
    start = date(2020, 1, 1)
    flows = [(start, -first)]
    flows += [(start + timedelta(days=d), a) for d, a in others]
    flows.append((start + timedelta(days=final_day), final))
    result = xirr(flows)
    if not result.converged:
        assert result.rate is None and result.reason
        return
    assert result.rate is not None
    # Near -100 % a float's last bits move 1 + r by about 1e-15 / (1 + r): no nearer rate exists.
    assert relative_npv(result.rate, flows) <= D("1e-6") + D("1e-15") / (1 + result.rate)


@settings(deadline=None)
@given(
    st.lists(st.tuples(offsets, amounts), min_size=1, max_size=6),
    st.integers(min_value=365, max_value=3 * 365),
    st.decimals(min_value=D("0.5"), max_value=D(2), places=4),
)
def test_xirr_converges_for_deposits_held_at_least_a_year(
    deposits: list[tuple[int, Decimal]], held: int, multiple: Decimal
) -> None:
    # Money put in, then valued at least a year after the last deposit at 0.5x to 2x what went
    # in: the rate lies between about -50% and +100%, and must be found.
    start = date(2020, 1, 1)
    flows = [(start + timedelta(days=d), -a) for d, a in deposits]
    put_in = sum((a for _, a in deposits), D(0))
    end = start + timedelta(days=max(d for d, _ in deposits) + held)
    flows.append((end, put_in * multiple))
    result = xirr(flows)
    assert result.converged and result.rate is not None
    assert D("-0.51") < result.rate < D("1.01")
    assert abs(xnpv(result.rate, flows)) <= put_in * D("1e-6")


def relative_npv(rate: Decimal, flows: list[tuple[date, Decimal]]) -> Decimal:
    """|NPV| next to the size of the discounted flows (in Decimal): near r = -1 the discount
    factors are huge, and the NPV is small only relative to them."""
    first = min(day for day, _ in flows)
    terms = [a / (1 + rate) ** (D((day - first).days) / 365) for day, a in flows]
    return abs(sum(terms, D(0))) / sum((abs(t) for t in terms), D(0))


@pytest.mark.parametrize(
    ("flows", "expected"),
    [
        (  # pyxirr: -0.8992821981627284 (our old check ignored discounting and refused it)
            [
                (date(2015, 12, 29), D("-9223.78")),
                (date(2016, 12, 22), D("7494.55")),
                (date(2017, 6, 20), D("-345.28")),
                (date(2018, 7, 1), D("4683.32")),
                (date(2019, 4, 17), D("-8056.91")),
                (date(2020, 4, 26), D("687.99")),
            ],
            -0.8992821981627284,
        ),
        ([(date(2015, 1, 1), D(-1_000_000)), (date(2016, 12, 31), D("0.57"))], -0.9992450165564729),
        # 15 % up in one day, annualized: about 1.43e22, stated in full.
        ([(date(2024, 1, 1), D(-100)), (date(2024, 1, 2), D(115))], 1.4279458186331043e22),
    ],
)
def test_xirr_states_extreme_but_valid_rates(
    flows: list[tuple[date, Decimal]], expected: float
) -> None:
    result = xirr(flows)
    assert result.converged and result.rate is not None
    assert float(result.rate) == pytest.approx(expected, rel=1e-9)
    assert relative_npv(result.rate, flows) <= D("1e-9")


def test_huge_rates_reach_the_wire_as_plain_decimals() -> None:
    rate = xirr([(date(2024, 1, 1), D(-100)), (date(2024, 1, 2), D(115))]).rate
    assert rate is not None
    assert present_ratio(rate) == "14279458186300000000000.000000"
    assert present_percent(rate) == "1427945818630000000000000.00"
    assert D(present_ratio(D("5.5e40"))) == D("5.5e40")


def test_two_close_roots_between_grid_points_are_found_and_the_nearest_zero_given() -> None:
    # NPV(v) = 11119.3 - 215.04 v + v^2 with v = 1/(1+r), one year apart: v = 128.53 or 86.51,
    # r = -0.99222 or -0.98844 (pyxirr: -0.9884411823496276). Both lie between two points of the
    # bracketing grid, where the NPV has the same sign.
    flows = [
        (date(2015, 1, 1), D("11119.3")),
        (date(2016, 1, 1), D("-215.04")),
        (date(2016, 12, 31), D(1)),
    ]
    result = xirr(flows)
    assert result.converged and result.rate is not None
    assert float(result.rate) == pytest.approx(-0.9884411823496276, rel=1e-9)


def test_of_several_rates_the_one_nearest_zero_is_given_even_when_newton_finds_another() -> None:
    # 476 - 1452 v + 1000 v^2 = 0: v = 0.952 or 0.5, r = 0.0504... or 1.0 (a year apart).
    flows = [
        (date(2015, 1, 1), D(476)),
        (date(2016, 1, 1), D(-1452)),
        (date(2016, 12, 31), D(1000)),
    ]
    nearest = xirr(flows)
    from_far = xirr(flows, guess=0.9)  # Newton from 0.9 converges to 1.0
    assert nearest.rate is not None and from_far.rate is not None
    assert float(from_far.rate) == pytest.approx(float(nearest.rate), rel=1e-11)
    assert float(nearest.rate) == pytest.approx(6 / 119, rel=1e-11)  # v = 0.952 = 1 / (1 + r)
    assert (nearest.method, from_far.method) == ("newton", "bisection")


@settings(deadline=None)
@given(
    amounts,
    st.floats(min_value=-0.99, max_value=3.0),
    st.floats(min_value=-0.99, max_value=3.0),
    st.sampled_from([1, 30, 365, 3650]),
    flow_lists,
)
def test_xirr_gives_the_same_answer_without_bisecting_an_extremum_it_can_bound(
    first: Decimal,
    r1: float,
    r2: float,
    spacing: int,
    others: list[tuple[int, Decimal]],
) -> None:
    # -a, a (2 + r1 + r2), -a (1 + r1)(1 + r2) at equal spacing has roots r1 and r2, often two
    # close ones between grid points: the grid skips finding an extremum only where bounds from
    # the interval's ends show its sign, so the answer is the one the full bisection gives.
    start = date(2020, 1, 1)
    flows = [
        (start, -first),
        (start + timedelta(days=spacing), (first * D(2 + r1 + r2)).quantize(D("0.01"))),
        (
            start + timedelta(days=2 * spacing),
            -(first * D((1 + r1) * (1 + r2))).quantize(D("0.01")),
        ),
    ]
    flows += [(start + timedelta(days=d), a) for d, a in others]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(xirr_module, "_keeps_sign", lambda *_: False)
        bisecting = xirr(flows)
    assert xirr(flows) == bisecting


def test_a_gain_of_a_million_times_in_weeks_is_stated_as_pyxirr_states_it() -> None:
    # Found by hypothesis: the root (about 2.4e38 a year) was beyond the grid's old end.
    flows = [
        (date(2015, 1, 20), D("-0.46")),
        (date(2015, 3, 19), D("577518.87")),
        (date(2016, 6, 30), D("-72504.69")),
        (date(2021, 11, 2), D("1.04")),
    ]
    theirs = pyxirr.xirr([d for d, _ in flows], [float(a) for _, a in flows])
    ours = xirr(flows)
    assert ours.converged and ours.rate is not None and theirs is not None, ours
    assert relative_npv(ours.rate, flows) <= D("1e-9")
    assert abs(float(ours.rate) / theirs - 1) < 1e-6


@settings(deadline=None, max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10 * 365),
            st.decimals(min_value=D(-1_000_000), max_value=D(1_000_000), places=2),
        ),
        min_size=2,
        max_size=8,
    )
)
def test_xirr_agrees_with_pyxirr(series: list[tuple[int, Decimal]]) -> None:
    start = date(2015, 1, 1)
    flows = [(start + timedelta(days=d), a) for d, a in series]
    days = [day for day, _ in flows]
    try:
        theirs = pyxirr.xirr(days, [float(a) for _, a in flows])
    except pyxirr.InvalidPaymentsError:
        theirs = None
    ours = xirr(flows)
    if theirs is None or not math.isfinite(theirs) or theirs <= -1:
        return  # pyxirr found no rate; ours, if any, is checked by the NPV property above
    by_day: dict[date, Decimal] = {}
    for day, amount in flows:
        by_day[day] = by_day.get(day, D(0)) + amount
    if not (min(by_day.values()) < 0 < max(by_day.values())):
        return  # flows that cancel on one day: any rate is a "root"; we say no sign change
    if relative_npv(D(repr(theirs)), flows) > D("1e-6"):
        return  # pyxirr's answer is no root (it can return one near -100 % that is not)
    # When pyxirr finds a rate, so do we: a root (to 1e-9 of the discounted flows; near -100 %
    # a float's last bits move 1 + r by about 1e-15 / (1 + r)), and of the roots the one
    # nearest 0, never farther than theirs.
    assert ours.converged and ours.rate is not None, (theirs, ours)
    assert relative_npv(ours.rate, flows) <= D("1e-9") + D("1e-15") / (1 + ours.rate)
    assert abs(float(ours.rate)) <= abs(theirs) * (1 + 1e-6) + 1e-9


# --- the value series --------------------------------------------------------------------------


def test_the_value_series_carries_the_last_close_over_gaps() -> None:
    trades = [on(date(2024, 1, 1), Side.BUY, "AAPL", "10", "100")]
    history = {
        "AAPL": {date(2024, 1, 1): D(101), date(2024, 1, 2): D(102), date(2024, 1, 5): D(105)}
    }
    series = value_series(trades, history, start=date(2023, 12, 31), end=date(2024, 1, 6))
    assert [p.value for p in series] == [0, 1010, 1020, 1020, 1020, 1050, 1050]
    # Recorded without a deposit, the 1000 the buy cost came in at the start of 2024-01-01.
    assert [p.inflow for p in series] == [0, 1000, 0, 0, 0, 0, 0]
    # TWR telescopes without further flows: 1050 / 1000 - 1 = 0.05.
    assert time_weighted_return(series) == D("0.05")


def test_before_any_close_is_known_a_holding_is_valued_at_its_trade_price() -> None:
    trades = [on(date(2024, 1, 1), Side.BUY, "AAPL", "10", "100")]
    history = {"AAPL": {date(2024, 1, 3): D(103)}}
    series = value_series(trades, history, start=date(2024, 1, 1), end=date(2024, 1, 3))
    assert [p.value for p in series] == [1000, 1000, 1030]


def test_a_trade_more_recent_than_the_last_close_prices_the_holding() -> None:
    trades = [
        on(date(2024, 1, 1), Side.BUY, "AAPL", "10", "100"),
        on(date(2024, 1, 3), Side.BUY, "AAPL", "10", "110"),
    ]
    history = {"AAPL": {date(2024, 1, 1): D(100)}}
    series = value_series(trades, history, start=date(2024, 1, 1), end=date(2024, 1, 3))
    assert [p.value for p in series] == [1000, 1000, 2200]  # 20 * 110, not 20 * 100


def test_twr_of_a_series_excludes_deposits_and_withdrawals() -> None:
    d = [date(2024, 3, n) for n in range(1, 6)]
    trades = [
        on(d[1], Side.DEPOSIT, "", "1000"),
        on(d[1], Side.BUY, "AAPL", "10", "100"),
        on(d[3], Side.DEPOSIT, "", "1100"),
        on(d[3], Side.BUY, "AAPL", "10", "110"),
        on(d[4], Side.SELL, "AAPL", "1", "121"),
        on(d[4], Side.WITHDRAWAL, "", "121"),  # leaves at the end of the day: r unaffected
    ]
    history = {"AAPL": {d[1]: D(100), d[2]: D(110), d[3]: D(110), d[4]: D(121)}}
    series = value_series(trades, history, start=d[0], end=d[4])
    # baseline 0
    # day 1: in 1000, V = 10 * 100         = 1000 -> r = 1000 / (0 + 1000) - 1      = 0
    # day 2:          V = 10 * 110         = 1100 -> r = 1100 / 1000 - 1            = 0.10
    # day 3: in 1100, V = 20 * 110         = 2200 -> r = 2200 / (1100 + 1100) - 1   = 0
    # day 4: out 121, V = 19 * 121         = 2299 -> r = (2299 + 121) / 2200 - 1    = 0.10
    assert [p.value for p in series] == [0, 1000, 1100, 2200, 2299]
    assert [(p.inflow, p.outflow) for p in series] == [
        (0, 0),
        (1000, 0),
        (0, 0),
        (1100, 0),
        (0, 121),
    ]
    # TWR = 1.0 * 1.1 * 1.0 * 1.1 - 1 = 0.21
    assert time_weighted_return(series) == D("0.21")


def test_money_weighted_return_of_a_year_held() -> None:
    trades = [
        on(date(2023, 1, 1), Side.DEPOSIT, "", "1000"),
        on(date(2023, 1, 1), Side.BUY, "AAPL", "10", "100"),
    ]
    history = {"AAPL": {date(2024, 1, 1): D(110)}}
    series = value_series(trades, history, start=date(2022, 12, 31), end=date(2024, 1, 1))
    # investor's flows: -1000 on 2023-01-01, +1100 (the final value) on 2024-01-01 -> 10%
    assert money_weighted_flows(series) == [
        (date(2022, 12, 31), 0),
        (date(2023, 1, 1), -1000),
        (date(2024, 1, 1), 1100),
    ]
    assert money_weighted_return(series).rate == D("0.1")


# --- allocation --------------------------------------------------------------------------------


def test_allocation_lists_symbols_biggest_first_then_cash() -> None:
    slices = allocation({"MSFT": D(300), "AAPL": D(600), "GONE": D(0)}, D(100))
    assert [(s.name, s.weight, s.is_cash) for s in slices] == [
        ("AAPL", D("0.6"), False),
        ("MSFT", D("0.3"), False),
        (CASH, D("0.1"), True),
    ]


def test_rounded_weights_still_sum_to_exactly_one() -> None:
    # Thirds round to 0.333333 each (sum 0.999999); the largest remainder gets the missing unit.
    slices = allocation({"A": D(1), "B": D(1), "C": D(1)}, D(0))
    assert [s.weight for s in slices] == [D("0.333334"), D("0.333333"), D("0.333333"), D(0)]
    assert sum(s.weight for s in slices) == 1


def test_an_empty_portfolio_has_no_allocation() -> None:
    assert allocation({}, D(0)) == []


@given(
    st.dictionaries(
        st.sampled_from(["AAPL", "MSFT", "NVDA", "GE", "KO"]),
        st.decimals(min_value=D(0), max_value=D(10**9), places=2),
    ),
    st.decimals(min_value=D(0), max_value=D(10**9), places=2),
)
def test_allocation_weights_sum_to_one(values: dict[str, Decimal], cash: Decimal) -> None:
    slices = allocation(values, cash)
    if slices:
        assert sum(s.weight for s in slices) == 1
        assert all(s.weight >= 0 for s in slices)


# --- ranges ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("range_", "today", "expected"),
    [
        ("1m", date(2024, 3, 31), date(2024, 2, 29)),  # clamped to the shorter month
        ("3m", date(2024, 5, 31), date(2024, 2, 29)),
        ("6m", date(2024, 8, 15), date(2024, 2, 15)),
        ("1y", date(2024, 2, 29), date(2023, 2, 28)),
        ("1Y", date(2024, 6, 10), date(2023, 6, 10)),
        ("1m", date(2024, 1, 15), date(2023, 12, 15)),
        ("ytd", date(2024, 6, 10), date(2023, 12, 31)),
    ],
)
def test_a_range_starts_from_the_close_it_is_measured_against(
    range_: str, today: date, expected: date
) -> None:
    assert range_start(range_, today) == expected


def test_all_starts_the_day_before_the_first_trade() -> None:
    assert range_start("all", date(2024, 6, 10), inception=date(2024, 1, 5)) == date(2024, 1, 4)
    assert range_start("", date(2024, 6, 10), inception=date(2024, 1, 5)) == date(2024, 1, 4)
    assert range_start("all", date(2024, 6, 10)) == date(2024, 6, 10)


def test_a_range_longer_than_the_portfolio_starts_at_its_inception() -> None:
    assert range_start("1y", date(2024, 6, 10), inception=date(2024, 3, 1)) == date(2024, 2, 29)


def test_an_unknown_range_is_rejected_naming_the_field() -> None:
    with pytest.raises(InvalidArgument, match="1m, 3m, 6m, 1y, ytd, all") as caught:
        range_start("2w", date(2024, 6, 10))
    assert [f for f, _ in caught.value.fields] == ["range"]


# --- the report --------------------------------------------------------------------------------

REPORT_TRADES = [
    on(date(2024, 1, 2), Side.DEPOSIT, "", "10000"),
    on(date(2024, 1, 2), Side.BUY, "AAPL", "100", "50", "1"),  # cost 5001
    on(date(2024, 3, 1), Side.SELL, "AAPL", "50", "60", "1"),  # 2999 in; FIFO cost 2500.50
    on(date(2024, 5, 1), Side.DIVIDEND, "AAPL", "50", "0.2"),  # 10
]
REPORT_PRICES = {
    "AAPL": {
        date(2024, 1, 2): D(50),
        date(2024, 3, 1): D(60),
        date(2024, 5, 31): D(70),
        date(2024, 6, 28): D(72),
    }
}
TODAY = date(2024, 6, 30)


def test_a_report_over_all_time_reconciles_gain_with_its_sources() -> None:
    report = performance_report(REPORT_TRADES, REPORT_PRICES, range_="all", today=TODAY)
    # end: cash 10000 - 5001 + 2999 + 10 = 8008; 50 shares at 72 = 3600; value 11608
    assert (report.start, report.start_value, report.end_value) == (date(2024, 1, 1), 0, 11608)
    assert (report.inflows, report.outflows) == (10000, 0)
    assert report.gain == 1608  # 11608 - 0 - 10000
    # realized 2999 - 2500.50 = 498.50; unrealized 3600 - 2500.50 = 1099.50; dividends 10
    assert report.realized_gain == D("498.5")
    assert report.unrealized_gain == D("1099.5")
    assert (report.dividends, report.fees) == (10, 2)
    assert report.gain == report.realized_gain + report.unrealized_gain + report.dividends
    assert [(s.name, s.value) for s in report.allocation] == [("AAPL", 3600), (CASH, 8008)]
    assert report.money_weighted_return.converged
    assert len(report.series) == (TODAY - date(2024, 1, 1)).days + 1


def test_a_report_over_a_range_counts_only_what_happened_after_its_baseline() -> None:
    report = performance_report(REPORT_TRADES, REPORT_PRICES, range_="3m", today=TODAY)
    # baseline: the close of 2024-03-30: cash 7998, 50 shares at the 60 carried from 03-01
    assert (report.start, report.start_value) == (date(2024, 3, 30), 10998)
    assert (report.realized_gain, report.dividends, report.fees) == (0, 10, 0)
    # gain 11608 - 10998 = 610 = 50 * (72 - 60) + the 10 dividend
    assert report.gain == 610
    # No external flows in range, so the chained TWR telescopes to 11608 / 10998 - 1.
    assert close_to(report.time_weighted_return, D(11608) / D(10998) - 1)
    assert report.range == "3m"


def test_a_trade_dated_just_ahead_of_the_clock_near_midnight_is_in_todays_performance() -> None:
    # A client whose clock runs ahead may date a trade up to five minutes after now: at 23:58
    # UTC, 00:02 tomorrow. It is recorded at now, so the report up to the close of today (the
    # clock's) holds it as the portfolio does; it had left the deposit (and, as the first
    # trade, the whole report) out until midnight.
    now = datetime(2024, 3, 14, 23, 58, tzinfo=UTC)
    deposit = parse_trade(
        Side.DEPOSIT, "", "1000", "", "", now + timedelta(minutes=4), now=now, sequence=1
    )
    assert deposit.executed_at == now
    report = performance_report([deposit], {}, range_="all", today=now.date())
    assert (report.end_value, report.inflows, report.end) == (
        Decimal(1000),
        Decimal(1000),
        date(2024, 3, 14),
    )
