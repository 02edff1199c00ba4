"""The CSV import's rules, without I/O: the header, every row checked and named by its number,
malformed files refused with a clear message, and the book replayed across rows and trades."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.portfolio.domain import Book, CashPolicy, Side, Trade, order_key
from services.portfolio.imports import MAX_REPORTED, book_check, parse_csv, parse_when
from services.runtime.errors import InvalidArgument

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def problems(text: str, *, max_rows: int = 100) -> list[tuple[str, str]]:
    with pytest.raises(InvalidArgument) as raised:
        parse_csv(text, now=NOW, max_rows=max_rows)
    return raised.value.fields


def test_a_good_file_gives_one_trade_per_row_in_any_column_order_and_case() -> None:
    rows = parse_csv(
        "Symbol,DATE,Side,Quantity,Price,Fees,Notes\r\n"
        "aapl,2024-01-02,BUY,10,150.25,1.5,first\r\n"
        "\r\n"
        'AAPL,2024-02-01T15:30:00Z,sell,4,170,,"with, comma"\r\n'
        ",2024-02-02,deposit,1000,,,\r\n",
        now=NOW,
        max_rows=100,
    )
    assert [r.number for r in rows] == [1, 2, 3]
    first, second, third = (r.trade for r in rows)
    assert (first.side, first.symbol, first.quantity, first.price, first.fees) == (
        Side.BUY,
        "AAPL",
        Decimal(10),
        Decimal("150.25"),
        Decimal("1.5"),
    )
    assert first.executed_at == datetime(2024, 1, 2, tzinfo=UTC)
    assert (second.executed_at, second.notes) == (
        datetime(2024, 2, 1, 15, 30, tzinfo=UTC),
        "with, comma",
    )
    assert (third.side, third.symbol, third.amount) == (Side.DEPOSIT, "", Decimal(1000))


def test_every_bad_row_is_reported_by_its_number_and_column() -> None:
    found = problems(
        "date,side,symbol,quantity,price\n"
        "2024-01-02,buy,AAPL,10,150\n"
        "2024-13-02,buy,AAPL,10,150\n"
        "2024-01-03,hold,AAPL,10,150\n"
        "2024-01-04,buy,AAPL,ten,-1\n"
        "2027-01-04,buy,AAPL,1,1\n"
        "2024-01-05,buy,AAPL,1\n"
        "2024-01-06,buy,,1,1\n"
    )
    assert found == [
        ("row 2: date", "must be a day (2024-03-15) or a time (2024-03-15T14:30Z)"),
        ("row 3: side", "must be one of buy, sell, dividend, deposit, withdrawal, split"),
        ("row 4: quantity", "must be a decimal number such as 187.42, not 'ten'"),
        ("row 4: price", "must be greater than zero"),
        ("row 5: date", "must not be in the future"),
        ("row 6", "has 4 columns; the header has 5"),
        ("row 7: symbol", "is required for a buy"),
    ]


def test_the_error_message_says_nothing_was_imported_and_how_rows_are_numbered() -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_csv(
            "date,side,quantity\n2024-01-02,deposit,1\n2024-01-02,deposit,x\n", now=NOW, max_rows=9
        )
    assert raised.value.message.startswith("nothing was imported: 1 row cannot be imported")
    assert "numbered from 1 after the header" in raised.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "is empty"),
        ("  \n\n", "is empty"),
        ("date,side,quantity\n", "has a header but no rows"),
        ('date,side,quantity\n2024-01-02,deposit,"100\n', "is not valid CSV (line 2)"),
        ('date,side,quantity\n2024-01-02,"dep"osit,100\n', "is not valid CSV (line 2)"),
        ("date,side,qty\n2024-01-02,deposit,1\n", "unknown column 'qty'"),
        ("date,side\n2024-01-02,deposit\n", "lacks the column quantity"),
        ("date,side,quantity,side\n", "'side' appears more than once"),
    ],
)
def test_a_malformed_file_is_refused_with_a_clear_message(text: str, expected: str) -> None:
    found = problems(text)
    assert [field for field, _ in found][:1] == ["csv"]
    assert expected in found[0][1]


def test_too_many_rows_are_refused_before_any_is_checked() -> None:
    text = "date,side,quantity\n" + "2024-01-02,deposit,1\n" * 4
    assert problems(text, max_rows=3) == [("csv", "has more than 3 rows; split it into files of 3")]
    assert len(parse_csv(text, now=NOW, max_rows=4)) == 4


def test_at_most_so_many_problems_are_reported_and_the_rest_counted() -> None:
    text = "date,side,quantity\n" + "2024-01-02,deposit,x\n" * (MAX_REPORTED + 5)
    found = problems(text)
    assert len(found) == MAX_REPORTED + 1
    assert found[-1] == ("csv", "and 5 more problems")


def test_times_without_an_offset_are_utc() -> None:
    assert parse_when("2024-03-15T14:30:00") == datetime(2024, 3, 15, 14, 30, tzinfo=UTC)
    assert parse_when("2024-03-15T14:30:00+02:00").astimezone(UTC).hour == 12


def trade(side: Side, symbol: str, quantity: str, day: int, sequence: int) -> Trade:
    return Trade(
        side,
        symbol,
        Decimal(quantity),
        Decimal(1) if not side.trades_shares else Decimal(10),
        Decimal(0),
        datetime(2024, 1, day, tzinfo=UTC),
        sequence,
    )


def test_the_book_check_names_the_rows_that_sell_more_than_the_earlier_rows_and_trades_leave() -> (
    None
):
    existing = [trade(Side.BUY, "KO", "5", 1, 1), trade(Side.SELL, "KO", "3", 10, 2)]
    rows = parse_csv(
        "date,side,symbol,quantity,price\n"
        "2024-01-05,sell,KO,2,11\n"  # fine: 5 held then
        "2024-01-06,sell,KO,1,11\n"  # fine, but leaves 2 for the existing sell of 3 on the 10th
        "2024-01-07,sell,AAPL,1,11\n",  # never held
        now=NOW,
        max_rows=9,
    )
    new = [
        Trade(
            r.trade.side,
            r.trade.symbol,
            r.trade.quantity,
            r.trade.price,
            r.trade.fees,
            r.trade.executed_at,
            3 + i,
        )
        for i, r in enumerate(rows)
    ]
    events = sorted([*existing, *new], key=order_key)
    with pytest.raises(InvalidArgument) as raised:
        book_check(rows)(Book(CashPolicy.FUND_SHORTFALL), events, new)
    assert raised.value.fields == [
        ("row 3: quantity", "cannot sell 1 AAPL: only 0 held (short by 1)"),
        (
            "csv",
            "the rows would leave the existing sell of 2024-01-10 impossible:"
            " cannot sell 3 KO: only 2 held (short by 1)",
        ),
    ]
