"""The realized-gains report: the book's sales as rows (FIFO lot by lot, or at the average
cost), periods, terms, and the rows over all time adding up exactly to the realized gain."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.portfolio.domain import Book, CostMethod, Side, Split, Trade, parse_trade
from services.portfolio.periods import Period
from services.portfolio.realized import RealizedRow, period_of, realized_report
from services.runtime.errors import InvalidArgument
from tests.unit.book_trades import ratios, share_histories, valid_trades
from tests.utc_days import at

D = Decimal
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def trade(side: Side, quantity: str, price: str, fees: str, day: date, seq: int) -> Trade:
    made = parse_trade(side, "AAPL", quantity, price, fees, at(day), now=NOW, sequence=seq)
    return Trade(
        made.side,
        made.symbol,
        made.quantity,
        made.price,
        made.fees,
        made.executed_at,
        seq,
        f"t{seq}",
    )


TWO_LOTS = [
    trade(Side.BUY, "10", "100", "5", date(2023, 1, 10), 1),  # long-held by the sale
    trade(Side.BUY, "10", "150", "0", date(2024, 9, 1), 2),  # short-held
    trade(Side.SELL, "15", "200", "15", date(2024, 12, 2), 3),
]


def test_fifo_rows_are_the_lots_a_sale_closed_with_their_days_and_terms() -> None:
    book = Book.replay(TWO_LOTS, sales=True)
    report = realized_report(book.sales, CostMethod.FIFO, Period())
    first, second = report.rows
    # Proceeds 15 * 200 - 15 = 2985, shared by quantity: 1990 and 995.
    assert (first.trade_id, first.sold_on, first.quantity) == ("t3", date(2024, 12, 2), D(10))
    assert (first.proceeds, first.cost_basis, first.gain) == (D(1990), D(1005), D(985))
    assert (first.acquired_on, first.holding_days, first.long_term) == (
        date(2023, 1, 10),
        692,
        True,
    )
    assert (second.quantity, second.proceeds, second.cost_basis, second.gain) == (
        D(5),
        D(995),
        D(750),
        D(245),
    )
    assert (second.acquired_on, second.holding_days, second.long_term) == (
        date(2024, 9, 1),
        92,
        False,
    )
    totals = report.totals
    assert (totals.long_term, totals.short_term, totals.gain) == (D(985), D(245), D(1230))
    assert totals.gain == book.realized_gain(CostMethod.FIFO)


def test_average_rows_are_one_per_sale_without_terms() -> None:
    book = Book.replay(TWO_LOTS, sales=True)
    report = realized_report(book.sales, CostMethod.AVERAGE, Period())
    (row,) = report.rows
    # Average cost of 20 shares for 2505: 15 of them cost 1878.75.
    assert (row.quantity, row.proceeds, row.cost_basis) == (D(15), D(2985), D("1878.75"))
    assert (row.acquired_on, row.holding_days, row.long_term) == (None, None, None)
    assert (report.totals.short_term, report.totals.long_term) == (None, None)
    assert report.totals.gain == book.realized_gain(CostMethod.AVERAGE) == D("1106.25")


def test_a_period_takes_the_sales_of_its_days_both_included() -> None:
    sales = Book.replay(TWO_LOTS, sales=True).sales
    assert realized_report(sales, CostMethod.FIFO, period_of("2024-12-02", "2024-12-02")).rows
    assert not realized_report(sales, CostMethod.FIFO, period_of("2024-01-01", "2024-12-01")).rows
    assert not realized_report(sales, CostMethod.FIFO, period_of("2024-12-03", "")).rows


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [("2024-02-30", "", "from"), ("", "2024-13-01", "to"), ("2024-12-31", "2024-01-01", "from")],
)
def test_a_bad_period_names_its_field(start: str, end: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        period_of(start, end)
    assert [f for f, _ in refused.value.fields] == [field]


def test_a_split_keeps_the_lots_day_and_its_cash_in_lieu_is_a_row() -> None:
    trades = [
        trade(Side.BUY, "10", "300", "0", date(2024, 1, 2), 1),
        trade(Side.SELL, "20", "110", "0", date(2024, 6, 3), 2),
    ]
    split = Split("AAPL", D(3), at(date(2024, 3, 1)), of=1)
    book = Book.replay(trades, splits=[split], sales=True)
    (row,) = realized_report(book.sales, CostMethod.FIFO, Period()).rows
    assert (row.quantity, row.cost_basis, row.proceeds, row.acquired_on) == (
        D(20),
        D(2000),
        D(2200),
        date(2024, 1, 2),
    )
    reverse = Split("AAPL", D(1), at(date(2024, 3, 1)), price=D(900), of=3)
    odd = [trade(Side.BUY, "10", "300", "0", date(2024, 1, 2), 1)]
    (lieu,) = realized_report(
        Book.replay(odd, splits=[reverse], sales=True).sales, CostMethod.FIFO, Period()
    ).rows
    assert (lieu.cash_in_lieu, lieu.trade_id, lieu.sold_on) == (True, "", date(2024, 3, 1))


@settings(deadline=None)
@given(share_histories, st.none() | ratios)
def test_the_rows_over_all_time_add_up_exactly_to_the_realized_gain(
    steps: list[tuple[object, ...]], ratio: Decimal | None
) -> None:
    trades = valid_trades(steps)
    end = trades[-1].executed_at
    splits = [] if ratio is None else [Split("AAPL", ratio, end + timedelta(days=1))]
    held = Book.replay(trades, splits=splits, sales=True).quantity("AAPL")
    if held:  # a sale after the split: its lots' days and costs came through it
        last = Trade(Side.SELL, "AAPL", held, D("7.5"), D(1), end + timedelta(days=400), 99)
        trades.append(last)
    book = Book.replay(trades, splits=splits, sales=True)
    for method in CostMethod:
        report = realized_report(book.sales, method, Period())
        assert report.totals.gain == book.realized_gain(method)
        sold = sum((t.quantity for t in trades if t.side is Side.SELL), D(0))
        lieu = sum((c.quantity for c in book.cash_in_lieu), D(0))
        assert sum((r.quantity for r in report.rows), D(0)) == sold + lieu


def test_a_book_keeps_its_sales_through_a_back_dated_record_and_only_when_asked() -> None:
    book = Book(sales=True)
    for made in (TWO_LOTS[1], TWO_LOTS[0], TWO_LOTS[2]):  # the first buy recorded back-dated
        book.record(made)
    fifo = realized_report(book.sales, CostMethod.FIFO, Period())
    assert [r.acquired_on for r in fifo.rows] == [date(2023, 1, 10), date(2024, 9, 1)]
    assert Book.replay(TWO_LOTS).sales == ()


@settings(deadline=None)
@given(share_histories, ratios)
def test_keeping_the_sales_changes_nothing_else_in_the_book(
    steps: list[tuple[object, ...]], ratio: Decimal
) -> None:
    trades = valid_trades(steps)
    splits = [Split("AAPL", ratio, trades[-1].executed_at + timedelta(days=1))]
    kept, plain = (Book.replay(trades, splits=splits, sales=s) for s in (True, False))
    assert kept.state() == plain.state()
    assert kept.cash_in_lieu == plain.cash_in_lieu


@pytest.mark.parametrize(
    ("acquired", "sold", "term"),
    [
        (date(2023, 1, 10), date(2024, 1, 9), False),
        (date(2023, 1, 10), date(2024, 1, 10), False),  # on the anniversary: one year, not more
        (date(2023, 1, 10), date(2024, 1, 11), True),
        (date(2023, 3, 2), date(2024, 3, 1), False),  # 365 days across a leap day
        (date(2024, 2, 29), date(2025, 2, 28), False),  # no 29th: the 28th is the anniversary
        (date(2024, 2, 29), date(2025, 3, 1), True),
    ],
)
def test_long_term_is_held_more_than_a_year_as_the_irs_counts(
    acquired: date, sold: date, term: bool
) -> None:
    """Not "365 days or more": a lot sold on its anniversary, or 365 days later across a leap
    day, was long-term here and short-term on the broker's 1099-B."""
    row = RealizedRow(
        symbol="AAPL",
        trade_id="t",
        sold_on=sold,
        quantity=Decimal(1),
        proceeds=Decimal(2),
        cost_basis=Decimal(1),
        gain=Decimal(1),
        cash_in_lieu=False,
        acquired_on=acquired,
        holding_days=(sold - acquired).days,
    )
    assert row.long_term is term
