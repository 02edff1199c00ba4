"""Dividend income (services/portfolio/income.py): calendar months, quarters and years at their
edges (leap years, year 1 and 9999), empty periods filled, the cap on periods, a dividend paid in
another currency counted at its day's rate, the trailing twelve months and yield on cost, the
next twelve months' projection; and, over random histories, the report's gross total is the
book's `dividends` to the last digit."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.portfolio.currencies import TradeFx
from services.portfolio.domain import Book, Side, Split, Trade
from services.portfolio.income import (
    MAX_PERIODS,
    Grouping,
    Listing,
    Received,
    check_period_count,
    income_as_held,
    income_report,
    next_year,
    period_bounds,
    period_count,
    period_index,
    period_label,
    projected_income,
    received,
    trailing_income,
    trailing_year,
)
from services.portfolio.periods import Period
from services.portfolio.records import RecordedTrade
from services.runtime.errors import InvalidArgument

D = Decimal
MONTH, QUARTER, YEAR = Grouping.MONTH, Grouping.QUARTER, Grouping.YEAR


def paid(symbol: str, day: date, gross: str, fees: str = "0") -> Received:
    return Received(symbol, day, D(gross), D(fees), "USD")


def periods_of(day: date, grouping: Grouping) -> tuple[str, date, date]:
    index = period_index(day, grouping)
    return (period_label(index, grouping), *period_bounds(index, grouping))


# --- calendar periods --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "grouping", "expected"),
    [
        (date(2024, 1, 1), MONTH, ("2024-01", date(2024, 1, 1), date(2024, 1, 31))),
        (date(2024, 2, 29), MONTH, ("2024-02", date(2024, 2, 1), date(2024, 2, 29))),
        (date(2023, 2, 28), MONTH, ("2023-02", date(2023, 2, 1), date(2023, 2, 28))),
        # 1900 is no leap year (a century not divisible by 400); 2000 is.
        (date(1900, 2, 1), MONTH, ("1900-02", date(1900, 2, 1), date(1900, 2, 28))),
        (date(2000, 2, 1), MONTH, ("2000-02", date(2000, 2, 1), date(2000, 2, 29))),
        (date(2024, 12, 31), MONTH, ("2024-12", date(2024, 12, 1), date(2024, 12, 31))),
        (date(2024, 3, 31), QUARTER, ("2024-Q1", date(2024, 1, 1), date(2024, 3, 31))),
        (date(2024, 4, 1), QUARTER, ("2024-Q2", date(2024, 4, 1), date(2024, 6, 30))),
        (date(2024, 9, 30), QUARTER, ("2024-Q3", date(2024, 7, 1), date(2024, 9, 30))),
        (date(2024, 12, 31), QUARTER, ("2024-Q4", date(2024, 10, 1), date(2024, 12, 31))),
        (date(2024, 7, 4), YEAR, ("2024", date(2024, 1, 1), date(2024, 12, 31))),
        (date.min, MONTH, ("0001-01", date(1, 1, 1), date(1, 1, 31))),
        (date.max, QUARTER, ("9999-Q4", date(9999, 10, 1), date.max)),
        (date.max, MONTH, ("9999-12", date(9999, 12, 1), date.max)),
    ],
)
def test_a_day_falls_in_its_utc_calendar_period(
    day: date, grouping: Grouping, expected: tuple[str, date, date]
) -> None:
    assert periods_of(day, grouping) == expected


def test_consecutive_periods_have_consecutive_numbers_across_a_year_end() -> None:
    assert period_index(date(2024, 1, 1), MONTH) == period_index(date(2023, 12, 31), MONTH) + 1
    assert period_index(date(2024, 1, 1), QUARTER) == period_index(date(2023, 12, 31), QUARTER) + 1
    assert period_count(date(2023, 12, 31), date(2024, 1, 1), MONTH) == 2
    assert period_count(date(2024, 1, 1), date(2024, 12, 31), QUARTER) == 4
    assert period_count(date(2024, 5, 1), date(2024, 4, 30), MONTH) == 0


def test_more_periods_than_the_cap_are_refused_naming_the_field() -> None:
    # A hundred years of months is the most.
    check_period_count(date(1924, 2, 1), date(2024, 1, 31), MONTH, blame="from")
    with pytest.raises(InvalidArgument) as refused:
        check_period_count(date(1924, 1, 31), date(2024, 1, 31), MONTH, blame="to")
    assert refused.value.fields[0][0] == "to"
    assert "1,201 months, more than 1,200" in refused.value.fields[0][1]
    with pytest.raises(InvalidArgument) as whole:
        check_period_count(date.min, date.max, MONTH, blame="from")
    assert "119,988 months" in whole.value.fields[0][1]
    assert MAX_PERIODS == 1200


# --- the report --------------------------------------------------------------------------------


def test_periods_without_income_between_the_first_and_last_are_listed_with_zeros() -> None:
    report = income_report(
        [
            paid("KO", date(2024, 1, 31), "10"),
            paid("KO", date(2024, 4, 1), "20", fees="3"),
            paid("PG", date(2024, 4, 30), "5"),
        ],
        MONTH,
    )
    assert [(p.label, p.income.gross, p.income.fees, p.income.count) for p in report.periods] == [
        ("2024-01", D(10), D(0), 1),
        ("2024-02", D(0), D(0), 0),
        ("2024-03", D(0), D(0), 0),
        ("2024-04", D(25), D(3), 2),
    ]
    assert (report.totals.gross, report.totals.fees, report.totals.net) == (D(35), D(3), D(32))
    assert [(s.symbol, s.income.gross, s.income.count, s.share) for s in report.symbols] == [
        ("KO", D(30), 2, D("0.857143")),  # 30 / 35, to 6 places
        ("PG", D(5), 1, D("0.142857")),
    ]


def test_the_bounds_given_set_the_periods_and_days_outside_are_left_out() -> None:
    dividends = [
        paid("KO", date(2023, 12, 31), "1"),
        paid("KO", date(2024, 1, 1), "2"),  # the period's first day: in
        paid("PG", date(2024, 6, 30), "3"),  # its last day: in
        paid("PG", date(2024, 7, 1), "4"),
    ]
    half = Period(date(2024, 1, 1), date(2024, 6, 30))
    report = income_report(dividends, QUARTER, half)
    assert [(p.label, p.income.gross) for p in report.periods] == [
        ("2024-Q1", D(2)),
        ("2024-Q2", D(3)),
    ]
    assert report.totals.gross == 5
    # Bounds wider than the dividends: every period of them, for a chart's axis.
    year = income_report([], MONTH, Period(date(2024, 1, 1), date(2024, 12, 31)))
    assert [p.label for p in year.periods] == [f"2024-{m:02d}" for m in range(1, 13)]
    assert year.totals.count == 0
    assert year.symbols == ()
    # Nothing to report and no bounds: no period.
    assert income_report([], YEAR).periods == ()


def test_symbols_are_sorted_largest_first_then_by_symbol_and_nothing_has_no_share() -> None:
    report = income_report(
        [paid("PG", date(2024, 1, 2), "5"), paid("KO", date(2024, 1, 3), "5")], YEAR
    )
    assert [s.symbol for s in report.symbols] == ["KO", "PG"]
    assert [s.share for s in report.symbols] == [D("0.5"), D("0.5")]
    # A dividend recorded as nothing but fees (a correction): no share of a gross of 0.
    zero = income_report([paid("KO", date(2024, 1, 2), "0", fees="1")], YEAR)
    assert [(s.symbol, s.share, s.income.net) for s in zero.symbols] == [("KO", None, D(-1))]


def test_too_many_periods_name_from_then_to_then_group_by() -> None:
    old, new = paid("KO", date(1901, 1, 15), "1"), paid("KO", date(2024, 1, 15), "1")
    for period, field in (
        (Period(date(1800, 1, 1)), "from"),
        (Period(None, date(9999, 12, 31)), "to"),
        (Period(), "groupBy"),
    ):
        with pytest.raises(InvalidArgument) as refused:
            income_report([old, new], MONTH, period)
        assert [f for f, _ in refused.value.fields] == [field]
    assert len(income_report([old, new], QUARTER).periods) == 493


def test_a_dividend_paid_in_another_currency_counts_at_its_days_rate() -> None:
    # 200 SHEL x 0.2707 GBP, recorded into a dollar portfolio at 1.2654 (the ex-date's rate): the
    # book holds the price converted, the record the pounds and the rate.
    rate = D("1.2654")
    at = datetime(2024, 5, 15, tzinfo=UTC)
    shel = Trade(Side.DIVIDEND, "SHEL", D(200), D("0.2707") * rate, D("8.121") * rate, at)
    recorded = [
        RecordedTrade("p", shel, at, fx=TradeFx("GBP", rate, D("0.2707"), D("8.121"))),
        RecordedTrade("p", Trade(Side.DEPOSIT, "", D(100), D(1), D(0), at), at),
        # Recorded before currencies: no rate kept, in the portfolio's currency.
        RecordedTrade("p", Trade(Side.DIVIDEND, "KO", D(10), D("0.485"), D(0), at), at),
    ]
    got = received(recorded, "USD")
    assert got == [
        Received("SHEL", date(2024, 5, 15), D("54.14") * rate, D("8.121") * rate, "GBP"),
        Received("KO", date(2024, 5, 15), D("4.85"), D(0), "USD"),
    ]
    report = income_report(got, MONTH)
    assert report.totals.gross == D("54.14") * rate + D("4.85")
    assert report.totals.gross == Book.replay([r.trade for r in recorded]).dividends


# --- the trailing twelve months ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("end", "start"),
    [
        (date(2024, 6, 30), date(2023, 7, 1)),
        # The 29th of February's year before has none: from the 1st of March.
        (date(2024, 2, 29), date(2023, 3, 1)),
        # Ending on the 28th of February after a leap day: 366 days, the 29th included.
        (date(2025, 2, 28), date(2024, 2, 29)),
        (date(2024, 3, 1), date(2023, 3, 2)),
        (date(1, 6, 1), date.min),
    ],
)
def test_the_trailing_twelve_months_start_the_day_after_the_same_day_a_year_before(
    end: date, start: date
) -> None:
    assert trailing_year(end) == (start, end)


def test_yield_on_cost_is_the_income_of_holdings_still_held_over_their_cost_basis() -> None:
    end = date(2024, 6, 30)
    dividends = [
        paid("KO", date(2023, 6, 30), "100"),  # a day too early
        paid("KO", date(2023, 7, 1), "30", fees="4.5"),  # the first day: in
        paid("KO", date(2024, 6, 30), "20"),  # the last day: in
        paid("JNJ", date(2024, 1, 15), "12"),  # sold off since: income, not yield
        paid("PG", date(2024, 7, 1), "9"),  # after the end
    ]
    basis = {"KO": D(2000), "SHEL": D(5400), "PG": D(900)}  # held at the end of `end`
    # As held at the end (the same holdings since each was paid): what each was paid.
    as_held = {"KO": D(50), "JNJ": D(12)}
    trailing = trailing_income(dividends, end, basis, as_held)
    assert (trailing.start, trailing.end) == (date(2023, 7, 1), end)
    assert (trailing.income.gross, trailing.income.fees, trailing.income.count) == (
        D(62),
        D("4.5"),
        3,
    )
    # SHEL paid nothing in the twelve months and PG paid after them: neither's cost counts.
    assert (trailing.held_income, trailing.cost_basis) == (D(50), D(2000))
    assert trailing.yield_on_cost == D("0.025")
    nothing_held = trailing_income(dividends, end, {}, as_held)
    assert (nothing_held.cost_basis, nothing_held.yield_on_cost) == (D(0), None)


def noon_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def ko(side: Side, day: date, quantity: str, price: str) -> Trade:
    return Trade(side, "KO", D(quantity), D(price), D(0), noon_of(day))


START, END = date(2023, 7, 1), date(2024, 6, 30)


def test_income_as_held_scales_each_dividend_to_the_shares_held_at_the_end() -> None:
    bought, paid_on = date(2023, 1, 10), [date(2023, 9, 15), date(2024, 3, 15)]
    dividends = [ko(Side.DIVIDEND, day, "100", "0.485") for day in paid_on]
    # Sold down to one share after both were paid: one share's worth of them, 0.97, not the
    # 97.00 the hundred shares were paid (over one share's cost of 50 that was a 194 % yield).
    sold_down = [ko(Side.BUY, bought, "100", "50"), *dividends]
    sold_down.append(ko(Side.SELL, date(2024, 4, 1), "99", "60"))
    assert income_as_held(sold_down, [], START, END) == {"KO": D("0.97")}
    # Bought up to 200 after the first: it is counted as 200 shares would have been paid it.
    bought_up = [ko(Side.BUY, bought, "100", "50"), dividends[0]]
    bought_up += [ko(Side.BUY, date(2023, 12, 1), "100", "55")]
    bought_up.append(ko(Side.DIVIDEND, paid_on[1], "200", "0.485"))
    assert income_as_held(bought_up, [], START, END) == {"KO": D("194.00")}
    # Recorded as one cash amount (quantity 1 at 48.50): scaled by the holding, not its quantity.
    cash = [ko(Side.BUY, bought, "100", "50"), ko(Side.DIVIDEND, paid_on[0], "1", "48.50")]
    assert income_as_held(cash, [], START, END) == {"KO": D("48.50")}
    # Sold off, or paid after the end or before the start: not there.
    gone = [*sold_down, ko(Side.SELL, date(2024, 5, 1), "1", "60")]
    assert income_as_held(gone, [], START, END) == {}
    outside = [ko(Side.BUY, bought, "100", "50"), ko(Side.DIVIDEND, date(2023, 6, 30), "100", "1")]
    outside.append(ko(Side.DIVIDEND, date(2024, 7, 1), "100", "1"))
    assert income_as_held(outside, [], START, END) == {}


def test_income_as_held_counts_a_split_between_the_dividend_and_the_end() -> None:
    history = [
        ko(Side.BUY, date(2023, 1, 10), "100", "50"),
        ko(Side.DIVIDEND, date(2023, 9, 15), "100", "0.485"),
    ]
    # 2-for-1 after it: 200 shares now, which are the 100 that were paid: the same 48.50.
    two_for_one = Split("KO", D(2), noon_of(date(2024, 1, 2)))
    assert income_as_held(history, [two_for_one], START, END) == {"KO": D("48.50")}
    # ...and then 50 of the 200 sold: three quarters of it.
    sold = [*history, ko(Side.SELL, date(2024, 2, 1), "50", "30")]
    assert income_as_held(sold, [two_for_one], START, END) == {"KO": D("36.375")}
    # A split after the end is not part of the window's holdings.
    later = Split("KO", D(2), noon_of(date(2024, 7, 2)))
    assert income_as_held(history, [later], START, END) == {"KO": D("48.50")}


# --- the next twelve months --------------------------------------------------------------------


def test_the_announced_dividends_of_the_next_twelve_months_times_the_shares_held_now() -> None:
    today = date(2024, 3, 15)
    calendar = {
        "KO": {date(2024, 3, 15): D("0.485"), date(2024, 6, 14): D("0.485")},  # today: paid
        "SHEL": {date(2025, 3, 15): D("0.2707"), date(2025, 3, 16): D("0.3")},  # last day in
        "PG": {date(2024, 4, 15): D("1.0065")},
        "JNJ": {date(2024, 5, 15): D("1.24")},
    }
    holdings = {"KO": D(100), "SHEL": D("10.5"), "PG": D(0), "7203": D(100), "JNJ": D(3)}
    listings = {"KO": Listing("USD", D(1)), "SHEL": Listing("GBP", D("1.2654"))}
    projection = projected_income(holdings, calendar, listings, today)
    assert (projection.start, projection.end) == (date(2024, 3, 16), date(2025, 3, 15))
    assert [
        (p.ex_date, p.symbol, p.quantity, p.per_share, p.currency, p.amount)
        for p in projection.dividends
    ] == [
        (date(2024, 6, 14), "KO", D(100), D("0.485"), "USD", D("48.5")),
        (date(2025, 3, 15), "SHEL", D("10.5"), D("0.2707"), "GBP", D("2.84235") * D("1.2654")),
    ]
    assert projection.total == D("48.5") + D("2.84235") * D("1.2654")
    # JNJ is held and announced, but its currency or rate is not known now: left out, named.
    assert projection.unpriced == ("JNJ",)


def test_the_next_twelve_months_from_a_leap_day_end_on_the_28th() -> None:
    assert next_year(date(2024, 2, 29)) == (date(2024, 3, 1), date(2025, 2, 28))
    assert next_year(date(2023, 12, 31)) == (date(2024, 1, 1), date(2024, 12, 31))


# --- against the book --------------------------------------------------------------------------

SYMBOLS = ("KO", "PG", "SHEL")
days = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))
quantities = st.decimals(min_value=D("0.00000001"), max_value=D("999999999999"), places=8)
per_share = st.decimals(min_value=D("0.000001"), max_value=D("99999"), places=6)
rates = st.decimals(min_value=D("0.000001"), max_value=D("99999"), places=6)
dividend_steps = st.tuples(st.sampled_from(SYMBOLS), days, quantities, per_share, rates, per_share)
buy_steps = st.tuples(st.sampled_from(SYMBOLS), days, quantities, per_share)


@settings(deadline=None)
@given(
    st.lists(dividend_steps, min_size=1, max_size=30),
    st.lists(buy_steps, max_size=10),
    st.sampled_from(list(Grouping)),
)
def test_over_all_time_the_gross_total_is_the_books_dividends_to_the_last_digit(
    dividends: list[tuple[str, date, Decimal, Decimal, Decimal, Decimal]],
    buys: list[tuple[str, date, Decimal, Decimal]],
    grouping: Grouping,
) -> None:
    # Amounts of 30 digits and more (8-place shares times a price converted at a 6-place rate):
    # the book's 28-digit sums round, so only the book's own order and context agree with it.
    recorded: list[RecordedTrade] = []
    for sequence, (symbol, day, quantity, price, rate, fees) in enumerate(dividends):
        at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        trade = Trade(Side.DIVIDEND, symbol, quantity, price * rate, fees * rate, at, sequence)
        recorded.append(RecordedTrade("p", trade, at, fx=TradeFx("EUR", rate, price, fees)))
    for sequence, (symbol, day, quantity, price) in enumerate(buys, start=len(dividends)):
        at = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
        recorded.append(
            RecordedTrade("p", Trade(Side.BUY, symbol, quantity, price, D(0), at, sequence), at)
        )
    # As the repository reads them: in replay order.
    recorded.sort(key=lambda r: (r.trade.executed_at, r.trade.sequence))
    book = Book.replay([r.trade for r in recorded])
    try:
        report = income_report(received(recorded, "USD"), grouping)
    except InvalidArgument:  # more than 1,200 months from the first to the last
        report = income_report(received(recorded, "USD"), Grouping.YEAR)
    assert report.totals.gross == book.dividends
    assert {s.symbol: s.income.gross for s in report.symbols} == {
        s: book.position(s).dividends for s in {d[0] for d in dividends}
    }
    assert sum(p.income.count for p in report.periods) == report.totals.count == len(dividends)
    assert report.periods[0].start <= min(d[1] for d in dividends)
    assert report.periods[-1].end >= max(d[1] for d in dividends)
    assert all(b.start == a.end + timedelta(days=1) for a, b in pairwise(report.periods))


def test_the_symbols_shares_add_up_to_exactly_one() -> None:
    # Three equal payers: a third each, which rounded on its own was 0.333333 three times
    # (99.9999 %); the largest remainder gives the first of the tie the missing millionth.
    day = date(2024, 3, 15)
    dividends = [paid(symbol, day, "1") for symbol in ("KO", "PG", "JNJ")]
    report = income_report(dividends, Grouping.MONTH)
    assert [(s.symbol, s.share) for s in report.symbols] == [
        ("JNJ", D("0.333334")),
        ("KO", D("0.333333")),
        ("PG", D("0.333333")),
    ]
    assert sum(s.share or 0 for s in report.symbols) == 1
    assert income_report([paid("KO", day, "0")], Grouping.MONTH).symbols[0].share is None
