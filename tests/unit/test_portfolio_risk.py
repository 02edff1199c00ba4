"""Risk figures (services/portfolio/risk.py): maximum drawdown of the time-weighted index,
trading-day returns with weekends chained into the next weekday, volatility, Sharpe, Sortino.

Reference cases are computed by hand in the comments; the code must agree with the arithmetic.
"""

from __future__ import annotations

import statistics
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.portfolio.domain import Side, Trade, parse_trade, present_ratio
from services.portfolio.performance import (
    ValuePoint,
    daily_returns,
    performance_report,
    time_weighted_return,
)
from services.portfolio.risk import (
    MIN_RETURNS,
    DailyReturn,
    Drawdown,
    max_drawdown,
    parse_risk_free_rate,
    risk_figures,
    trading_day_returns,
    volatility,
)
from services.runtime.errors import InvalidArgument
from tests.utc_days import at

D = Decimal
MONDAY = date(2024, 1, 1)
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def day(n: int) -> date:
    return MONDAY + timedelta(days=n)


def points(*values: str | tuple[str, str, str]) -> list[ValuePoint]:
    """One point a day from MONDAY: a value, or (value, inflow, outflow)."""
    made = []
    for n, given_value in enumerate(values):
        value, inflow, outflow = (
            given_value if isinstance(given_value, tuple) else (given_value, "0", "0")
        )
        made.append(ValuePoint(day(n), D(value), D(0), D(inflow), D(outflow)))
    return made


def shown(drawdown: Drawdown | None) -> tuple[str, date | None, date | None, date | None]:
    """The ratio as the wire shows it (6 places: each day's return is rounded at 28 digits),
    and the days."""
    assert drawdown is not None
    return present_ratio(drawdown.ratio), drawdown.peak, drawdown.trough, drawdown.recovery


def weekdays_from(first: date, returns: list[Decimal]) -> list[DailyReturn]:
    """`returns` on consecutive weekdays after `first`, with a return of 0 on every weekend day
    between them (a price carried over the weekend)."""
    dated: list[DailyReturn] = []
    current, taken = first, 0
    while taken < len(returns):
        current += timedelta(days=1)
        if current.weekday() >= 5:
            dated.append((current, D(0)))
        else:
            dated.append((current, returns[taken]))
            taken += 1
    return dated


# --- maximum drawdown ----------------------------------------------------------------------


def test_a_fall_and_its_recovery_are_dated() -> None:
    # Mon 100 (baseline), Tue 120, Wed 90, Thu 108, Fri 120, Sat 130.
    # Index: 1, 1.2, 0.9, 1.08, 1.2, 1.3. The fall from 1.2 (Tue) to 0.9 (Wed) is
    # 1 - 0.9 / 1.2 = 0.25; the index is back at 1.2 on Friday.
    series = points("100", "120", "90", "108", "120", "130")
    assert shown(max_drawdown(MONDAY, daily_returns(series))) == (
        "0.250000",
        day(1),
        day(2),
        day(4),
    )


def test_a_price_back_at_its_old_high_is_a_recovery_to_the_last_digit() -> None:
    # 100, 90, 100, 130: 100 / 90 - 1 is 0.111...1 to 28 digits, so the index comes back to
    # 0.9999999999999999999999999999, not 1: still back at the peak, on Wednesday.
    series = points("100", "90", "100", "130")
    returns = daily_returns(series)
    fall, rise = (r for _, r in returns[:2])
    assert fall is not None and rise is not None
    assert (1 + fall) * (1 + rise) < 1
    assert shown(max_drawdown(MONDAY, returns)) == ("0.100000", MONDAY, day(1), day(2))


def test_a_fall_not_recovered_has_no_recovery_day() -> None:
    # 100, 120, 90, 100, 84: from the peak 1.2 (Tue) down to 0.9 (Wed), up to 1.0, then
    # 0.84 (Fri): the deepest fall is 1 - 0.84 / 1.2 = 0.3, trough Friday, never back.
    series = points("100", "120", "90", "100", "84")
    assert shown(max_drawdown(MONDAY, daily_returns(series))) == ("0.300000", day(1), day(4), None)


def test_the_deepest_of_two_falls_is_the_one_reported() -> None:
    # 100 -> 90 (a 10 % fall, recovered at 100), then 150 -> 105 (30 %), then 150 again.
    series = points("100", "90", "100", "150", "105", "150")
    assert shown(max_drawdown(MONDAY, daily_returns(series))) == (
        "0.300000",
        day(3),
        day(4),
        day(5),
    )


def test_the_peak_day_is_the_first_day_at_the_peak() -> None:
    # 120 on Tue, carried Wed and Thu (no close), then 60 on Fri: the peak is Tuesday's.
    series = points("100", "120", "120", "120", "60")
    assert shown(max_drawdown(MONDAY, daily_returns(series))) == ("0.500000", day(1), day(4), None)


def test_a_withdrawal_is_not_a_drawdown() -> None:
    # 1000, then 600 of it withdrawn (value 400): r = (400 + 600) / 1000 - 1 = 0. The value fell
    # by 60 %, the index did not move. Then the 400 loses 10 % (360): that is the drawdown.
    series = points("1000", ("400", "0", "600"), "360")
    returns = daily_returns(series)
    assert [r for _, r in returns] == [0, D("-0.1")]
    # The index stood at its peak from Monday: the first day at the peak is the peak day.
    assert shown(max_drawdown(MONDAY, returns)) == ("0.100000", MONDAY, day(2), None)
    assert max_drawdown(MONDAY, returns[:1]) == Drawdown(D(0))  # never fell: 0, and no days


def test_a_deposit_before_a_fall_does_not_hide_it() -> None:
    # 100, then 900 deposited at the start of a day the whole 1000 loses 20 % (800):
    # r = 800 / (100 + 900) - 1 = -0.2, a 20 % drawdown although the value rose eightfold.
    series = points("100", ("800", "900", "0"))
    assert shown(max_drawdown(MONDAY, daily_returns(series))) == ("0.200000", MONDAY, day(1), None)


def test_with_nothing_invested_at_the_baseline_the_index_starts_on_the_first_day_with_money() -> (
    None
):
    # Bought at 105 on Tuesday, closed at 100: r = 100 / 105 - 1, a fall within the first day
    # money was invested, dated that day for both peak and trough (not the empty baseline).
    returns: list[DailyReturn] = [(day(1), D(100) / D(105) - 1), (day(2), D("0.05"))]
    assert shown(max_drawdown(None, returns)) == ("0.047619", day(1), day(1), day(2))
    assert max_drawdown(None, [(day(1), D("0.01"))]) == Drawdown(D(0))


def test_no_measured_return_means_no_drawdown() -> None:
    assert max_drawdown(MONDAY, []) is None
    assert max_drawdown(MONDAY, [(day(1), None), (day(2), None)]) is None


def test_a_report_counts_a_price_fall_and_not_the_withdrawal_beside_it() -> None:
    # Thu 2024-01-04: deposit 2000, buy 10 AAPL at 100 (the close). Fri: close 80, and 500 of
    # the cash withdrawn. Mon: close 100 again. The value goes 2000, 1300, 1500: down 35 % on
    # Friday, but the index fell only with the price: (800 + 1000) / 2000 - 1 = -0.1.
    thursday, friday, monday = date(2024, 1, 4), date(2024, 1, 5), date(2024, 1, 8)
    trades = [
        _on(thursday, Side.DEPOSIT, "", "2000"),
        _on(thursday, Side.BUY, "AAPL", "10", "100"),
        _on(friday, Side.WITHDRAWAL, "", "500"),
    ]
    prices = {"AAPL": {thursday: D(100), friday: D(80), monday: D(100)}}
    report = performance_report(trades, prices, range_="all", today=monday)
    assert [p.value for p in report.series] == [0, 2000, 1300, 1300, 1300, 1500]
    assert report.risk is not None
    # Mon: 1500 / 1300 - 1: the index is 0.9 * 15 / 13 = 1.038..., above the peak of 1.
    assert shown(report.risk.drawdown) == ("0.100000", thursday, friday, monday)
    assert report.risk.trading_days == 3  # Thu, Fri, and Mon with the weekend chained in


# --- trading-day returns -------------------------------------------------------------------


def test_weekend_returns_are_chained_into_the_next_weekday() -> None:
    friday, saturday, sunday, monday = (date(2024, 1, d) for d in (5, 6, 7, 8))
    returns: list[DailyReturn] = [
        (friday, D("0.01")),
        (saturday, D(0)),  # the prices carried
        (sunday, D("0.02")),  # a weekend trade above the carried close
        (monday, D("0.03")),
    ]
    # Monday's trading-day return: (1 + 0)(1 + 0.02)(1 + 0.03) - 1 = 0.0506.
    assert trading_day_returns(returns) == [D("0.01"), D("0.0506")]


def test_a_weekend_that_ends_the_range_is_chained_into_the_friday_before_it() -> None:
    friday, saturday = date(2024, 1, 5), date(2024, 1, 6)
    # (1 + 0.01)(1 + 0.01) - 1 = 0.0201
    assert trading_day_returns([(friday, D("0.01")), (saturday, D("0.01"))]) == [D("0.0201")]
    assert trading_day_returns([(saturday, D("0.01"))]) == [D("0.01")]


def test_carried_weekends_add_no_zero_returns_and_days_with_nothing_invested_none() -> None:
    # Two weeks of calendar days: 10 weekdays' returns, not 14 with four zeros among them.
    returns = weekdays_from(date(2024, 1, 5), [D("0.01"), D("-0.01")] * 5)
    assert len(returns) == 14
    assert trading_day_returns(returns) == [D("0.01"), D("-0.01")] * 5
    assert trading_day_returns([(MONDAY, None), (day(1), D("0.5"))]) == [D("0.5")]


def test_without_chaining_weekends_the_volatility_would_be_understated() -> None:
    # The reason for chaining: the same 40 weekday returns, with the 16 weekend zeros counted as
    # returns, give a standard deviation about sqrt(39 / 55) = 0.84 of the right one.
    weekday_returns = [D("0.02"), D("-0.01")] * 20
    dated = weekdays_from(date(2024, 1, 5), weekday_returns)
    right = volatility(trading_day_returns(dated))
    naive = volatility([r for _, r in dated if r is not None])
    assert right is not None and naive is not None
    assert right == volatility(weekday_returns)
    assert D("0.83") < naive / right < D("0.86")


# --- volatility, Sharpe, Sortino -----------------------------------------------------------

# 20 trading days, +2 % and -1 % in turn, over four calendar weeks (weekends carried):
# mean 0.005, each return 0.015 from it: sample variance 20 * 0.015^2 / 19 = 0.0045 / 19.
# Volatility sqrt(0.0045 / 19 * 252) = sqrt(1.134 / 19) = 0.2443035...
# Sharpe (rf 0): 0.005 * 252 / 0.2443035 = 1.26 / sqrt(1.134 / 19) = sqrt(26.6) = 5.1575188...
# Sortino (rf 0): shortfalls are the ten -1 %: sqrt(10 * 0.0001 / 20) * sqrt(252) = sqrt(0.0126),
# 1.26 / sqrt(0.0126) = sqrt(126) = 11.2249722...
ALTERNATING = weekdays_from(date(2024, 1, 5), [D("0.02"), D("-0.01")] * 10)


def test_volatility_sharpe_and_sortino_of_a_hand_computed_series() -> None:
    figures = risk_figures(date(2024, 1, 5), ALTERNATING)
    assert figures.trading_days == 20
    assert figures.note == ""
    assert present_ratio(figures.volatility) == "0.244304"
    assert present_ratio(figures.sharpe) == "5.157519"
    assert present_ratio(figures.sortino) == "11.224972"
    assert figures.sharpe is not None and figures.sortino is not None
    assert abs(figures.sharpe - D("26.6").sqrt()) < D("1e-20")
    assert abs(figures.sortino - D(126).sqrt()) < D("1e-20")
    # The sample standard deviation as the statistics module works it out.
    trading = [r for _, r in ALTERNATING if r]
    assert figures.volatility == statistics.stdev(trading) * D(252).sqrt()


def test_a_risk_free_rate_is_taken_off_at_its_daily_equivalent() -> None:
    # rf 2.52 % a year: rf_d = 0.0001. Excess 1.26 - 0.0252 = 1.2348; Sharpe 1.2348 / 0.2443035
    # = 5.054368...; the shortfalls below 0.0001 are ten of 0.0101: downside
    # sqrt(10 * 0.0101^2 / 20 * 252) = sqrt(0.01285326) = 0.1133722..., Sortino 10.891557...
    figures = risk_figures(date(2024, 1, 5), ALTERNATING, D("0.0252"))
    assert present_ratio(figures.volatility) == "0.244304"  # the rate moves no deviation
    assert present_ratio(figures.sharpe) == "5.054368"
    assert present_ratio(figures.sortino) == "10.891557"
    assert figures.risk_free_rate == D("0.0252")


def test_too_few_trading_day_returns_leave_the_statistics_empty_and_say_why() -> None:
    few = weekdays_from(date(2024, 1, 5), [D("0.02"), D("-0.01")] * 9 + [D("0.02")])
    figures = risk_figures(date(2024, 1, 5), few)
    assert (figures.volatility, figures.sharpe, figures.sortino) == (None, None, None)
    assert figures.trading_days == MIN_RETURNS - 1 == 19
    assert figures.note == (
        "volatility, Sharpe and Sortino need at least 20 trading-day returns; this range has 19"
    )
    assert figures.drawdown == Drawdown(
        D("0.01"), date(2024, 1, 8), date(2024, 1, 9), date(2024, 1, 10)
    )


def test_returns_that_never_vary_leave_sharpe_empty_not_a_division_error() -> None:
    # Cash only: every day's return is 0. No variation (Sharpe), no shortfall (Sortino).
    flat = weekdays_from(date(2024, 1, 5), [D(0)] * 25)
    figures = risk_figures(date(2024, 1, 5), flat)
    assert (figures.volatility, figures.sharpe, figures.sortino) == (D(0), None, None)
    assert figures.drawdown == Drawdown(D(0))
    assert figures.note == (
        "Sharpe is undefined: the trading-day returns did not vary; "
        "Sortino is undefined: no trading-day return fell below the risk-free rate"
    )
    # The same 1 % every day: no variation, and with rf 0 nothing below it either.
    steady = risk_figures(date(2024, 1, 5), weekdays_from(date(2024, 1, 5), [D("0.01")] * 25))
    assert (steady.sharpe, steady.sortino) == (None, None)


def test_nothing_invested_gives_no_figures() -> None:
    figures = risk_figures(MONDAY, [(day(1), None), (day(2), None)])
    assert (figures.drawdown, figures.volatility, figures.trading_days) == (None, None, 0)
    assert figures.note.endswith("this range has 0")


@pytest.mark.parametrize(
    ("raw", "rate"), [("", 0), (" ", 0), ("0.04", "0.04"), ("-0.005", "-0.005")]
)
def test_the_risk_free_rate_is_a_yearly_fraction(raw: str, rate: str | int) -> None:
    assert parse_risk_free_rate(raw) == D(rate)


@pytest.mark.parametrize("raw", ["1", "-1", "4%", "0.123456789", "nan"])
def test_a_risk_free_rate_out_of_bounds_or_malformed_is_refused_naming_the_field(raw: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_risk_free_rate(raw)
    assert [name for name, _ in refused.value.fields] == ["riskFreeRate"]


# --- properties ----------------------------------------------------------------------------

# A day: the value at its close (cents), and a deposit and a withdrawal (cents) that day.
_days = st.lists(
    st.tuples(
        st.integers(0, 10**7),
        st.integers(0, 10**6) | st.just(0),
        st.integers(0, 10**6) | st.just(0),
    ),
    min_size=1,
    max_size=60,
)


def _series(days: list[tuple[int, int, int]], scale: int = 1) -> list[ValuePoint]:
    start = date(2024, 1, 3)
    made = [ValuePoint(start, D(100_000 * scale) / 100, D(0), D(0), D(0))]
    for n, (value, inflow, outflow) in enumerate(days, start=1):
        made.append(
            ValuePoint(
                start + timedelta(days=n),
                D(value * scale) / 100,
                D(0),
                D(inflow * scale) / 100,
                D(min(outflow, value) * scale) / 100,
            )
        )
    return made


@given(_days)
def test_the_drawdown_is_a_fraction_between_0_and_1(days: list[tuple[int, int, int]]) -> None:
    drawdown = max_drawdown(date(2024, 1, 3), daily_returns(_series(days)))
    assert drawdown is not None
    assert 0 <= drawdown.ratio <= 1
    if drawdown.ratio:
        assert drawdown.peak is not None and drawdown.trough is not None
        assert drawdown.peak < drawdown.trough
        assert drawdown.recovery is None or drawdown.trough < drawdown.recovery
    else:
        assert (drawdown.peak, drawdown.trough, drawdown.recovery) == (None, None, None)


@given(_days, st.integers(2, 1000), st.sampled_from([D(0), D("0.04"), D("-0.01")]))
def test_scaling_every_value_changes_no_risk_figure(
    days: list[tuple[int, int, int]], scale: int, rate: Decimal
) -> None:
    start = date(2024, 1, 3)
    once = risk_figures(start, daily_returns(_series(days)), rate)
    scaled = risk_figures(start, daily_returns(_series(days, scale)), rate)
    assert scaled == once


@given(_days)
def test_trading_day_returns_chain_to_the_time_weighted_return(
    days: list[tuple[int, int, int]],
) -> None:
    series = _series(days)
    twr = time_weighted_return(series)
    growth = D(1)
    for r in trading_day_returns(daily_returns(series)):
        growth *= 1 + r
    assert twr is not None
    assert abs(growth - 1 - twr) <= D("1e-18") * max(D(1), abs(growth))


@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1, max_size=40))
def test_money_moved_in_and_out_alone_is_neither_a_drawdown_nor_volatility(
    flows: list[tuple[int, int]],
) -> None:
    # Prices never move: each day's value is yesterday's plus the day's deposit less its
    # withdrawal, however large. The value swings; the index stays at 1.
    series = [ValuePoint(date(2024, 1, 3), D(1000), D(0), D(0), D(0))]
    for n, (inflow, outflow) in enumerate(flows, start=1):
        before = series[-1].value
        taken = min(D(outflow), before + inflow)
        series.append(
            ValuePoint(
                date(2024, 1, 3) + timedelta(days=n),
                before + inflow - taken,
                D(0),
                D(inflow),
                taken,
            )
        )
    returns = daily_returns(series)
    assert max_drawdown(date(2024, 1, 3), returns) in (Drawdown(D(0)), None)
    assert all(r == 0 for r in trading_day_returns(returns))


def _on(day: date, side: Side, symbol: str, quantity: str, price: str = "") -> Trade:
    return parse_trade(side, symbol, quantity, price, "", at(day), now=NOW)
