"""The portfolio book's rules: parsing, trades, FIFO and average-cost lots, cash, totals."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Context, Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.portfolio.domain import (
    QUANTITY_PLACES,
    Book,
    CashInLieu,
    CashPolicy,
    CostMethod,
    InsufficientCash,
    InsufficientShares,
    Side,
    Split,
    new_trade,
    normalize_symbol,
    parse_decimal,
    parse_trade,
    present_money,
    present_percent,
    present_price,
    present_quantity,
    present_ratio,
)
from services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.unit.book_trades import (
    DAY0,
    NOW,
    at,
    buy,
    deposit,
    dividend,
    mixed_histories,
    plain,
    prices,
    quantities,
    ratios,
    sell,
    share_histories,
    valid_trades,
    withdraw,
)

D = Decimal


def state(book: Book) -> object:
    """Everything a refused trade must leave as it was."""
    return (
        book.trades,
        book.flows,
        book.cash,
        book.fees,
        book.dividends,
        {s: (book.quantity(s), book.lots(s)) for s in book.symbols()},
        book.totals({}),
    )


# --- decimals from the wire ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("187.42", "187.42"),
        (" 0.5 ", "0.5"),
        (".5", "0.5"),
        ("-3", "-3"),
        ("000123", "123"),
        ("1.000000000", "1"),  # trailing zeros are not precision
        ("999999999999.99999999", "999999999999.99999999"),
    ],
)
def test_plain_decimal_strings_parse_exactly(raw: str, expected: str) -> None:
    assert parse_decimal("quantity", raw) == D(expected)


@pytest.mark.parametrize("raw", ["abc", "1,000", "1e3", "0x10", "1.2.3", "١٢", "12 34", "$5"])
def test_non_numeric_input_is_rejected_naming_the_field(raw: str) -> None:
    with pytest.raises(InvalidArgument, match="must be a decimal number") as caught:
        parse_decimal("quantity", raw)
    assert [f for f, _ in caught.value.fields] == ["quantity"]


@pytest.mark.parametrize("raw", ["", "   "])
def test_an_empty_decimal_is_reported_as_required(raw: str) -> None:
    with pytest.raises(InvalidArgument, match="price: is required"):
        parse_decimal("price", raw)


@pytest.mark.parametrize("raw", ["NaN", "-Infinity", "inf", "sNaN", "+nan"])
def test_nan_and_infinity_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidArgument, match="must be a finite number") as caught:
        parse_decimal("price", raw)
    assert caught.value.fields[0][0] == "price"


@pytest.mark.parametrize(
    ("raw", "places", "problem"),
    [
        ("1234567890123", 8, "at most 12 before the decimal point"),
        ("0.123456789", 8, "at most 8"),
        ("1.1234567", 6, "at most 6"),
        ("1" * 70, 8, "at most 64"),
    ],
)
def test_too_many_digits_are_rejected_not_rounded(raw: str, places: int, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem) as caught:
        parse_decimal("fees", raw, places=places)
    assert caught.value.fields[0][0] == "fees"


# --- presenting: rounded once, half-even, at the edge ------------------------------------------


def test_money_is_presented_to_cents_with_bankers_rounding() -> None:
    assert present_money(D("0.125")) == "0.12"  # half to even: 2 stays
    assert present_money(D("0.135")) == "0.14"  # half to even: 3 goes up to 4
    assert present_money(D("1234.5")) == "1234.50"
    assert present_money(D("-0.001")) == "0.00"  # never "-0.00"


def test_quantities_prices_and_ratios_have_their_own_places() -> None:
    assert present_quantity(D("10.00000000")) == "10"
    assert present_quantity(D("1E+2")) == "100"
    assert present_quantity(D("0.123456785")) == "0.12345678"  # half to even
    assert present_price(D("187.4")) == "187.40"
    assert present_price(D("0.0001234")) == "0.000123"
    assert present_price(D("2.5000005")) == "2.50"
    assert present_ratio(D("0.1")) == "0.100000"
    assert present_percent(D("0.12345")) == "12.34"  # 12.345 -> half to even
    assert present_ratio(None) == present_percent(None) == ""


# --- trades ------------------------------------------------------------------------------------


def test_symbols_are_normalized_to_upper_case() -> None:
    assert normalize_symbol(" brk.b ") == "BRK.B"
    assert normalize_symbol("^gspc") == "^GSPC"
    assert buy("aapl", "1", "100").symbol == "AAPL"
    with pytest.raises(InvalidArgument, match="symbol"):
        normalize_symbol("AA PL")


@pytest.mark.parametrize(
    ("quantity", "price", "fees", "bad_field"),
    [
        ("0", "100", "0", "quantity"),
        ("-5", "100", "0", "quantity"),
        ("5", "0", "0", "price"),
        ("5", "-1", "0", "price"),
        ("5", "abc", "0", "price"),
        ("5", "100", "-1", "fees"),
    ],
)
def test_buys_need_a_positive_quantity_and_price_and_fees_of_zero_or_more(
    quantity: str, price: str, fees: str, bad_field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_trade(Side.BUY, "AAPL", quantity, price, fees, DAY0, now=NOW)
    assert [f for f, _ in caught.value.fields] == [bad_field]


def test_a_buy_or_sell_at_market_price_must_have_its_price_filled_in_by_the_caller() -> None:
    with pytest.raises(InvalidArgument, match="price is required"):
        parse_trade(Side.SELL, "AAPL", "1", "", "", DAY0, now=NOW)


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL, Side.DIVIDEND])
def test_share_and_dividend_trades_name_a_symbol(side: Side) -> None:
    with pytest.raises(InvalidArgument, match=f"symbol is required for a {side.value}"):
        parse_trade(side, " ", "1", "1", "", DAY0, now=NOW)


@pytest.mark.parametrize("side", [Side.DEPOSIT, Side.WITHDRAWAL])
def test_cash_sides_name_no_symbol(side: Side) -> None:
    with pytest.raises(InvalidArgument, match=f"symbol must be empty for a {side.value}"):
        parse_trade(side, "AAPL", "100", "", "", DAY0, now=NOW)


def test_a_cash_side_amount_is_quantity_times_price_and_an_empty_price_means_one() -> None:
    assert deposit("1500.25").amount == D("1500.25")
    assert dividend("AAPL", "40", "0.24").amount == D("9.60")  # 40 shares * 0.24 per share


def test_trades_dated_in_the_future_are_rejected_beyond_a_little_clock_skew() -> None:
    tomorrow = NOW + timedelta(days=1)
    with pytest.raises(InvalidArgument, match="executed_at must not be in the future"):
        parse_trade(Side.BUY, "AAPL", "1", "100", "", tomorrow, now=NOW)
    slightly_ahead = NOW + timedelta(minutes=1)
    assert parse_trade(Side.BUY, "AAPL", "1", "100", "", slightly_ahead, now=NOW).quantity == 1


def test_trade_times_must_carry_a_time_zone() -> None:
    with pytest.raises(InvalidArgument, match="executed_at must include a time zone"):
        parse_trade(Side.BUY, "AAPL", "1", "100", "", datetime(2024, 1, 2), now=NOW)


def test_every_broken_rule_of_a_trade_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_trade(Side.BUY, "", "-1", "x", "-2", NOW + timedelta(days=3), now=NOW)
    assert [f for f, _ in caught.value.fields] == [
        "symbol",
        "quantity",
        "price",
        "fees",
        "executed_at",
    ]
    assert caught.value.message.startswith("invalid trade: symbol is required for a buy;")


def test_new_trade_checks_the_same_rules_on_decimals() -> None:
    with pytest.raises(InvalidArgument) as caught:
        new_trade(Side.SELL, "AAPL", D("NaN"), D(0), D(-1), DAY0, now=NOW)
    assert [f for f, _ in caught.value.fields] == ["quantity", "price", "fees"]


# --- lots: FIFO and average cost ---------------------------------------------------------------


def test_each_buy_opens_a_lot_whose_cost_includes_its_fees() -> None:
    book = Book.replay([buy("AAPL", "10", "100", "10")])
    (lot,) = book.lots("AAPL")
    assert (lot.quantity, lot.cost, lot.unit_cost) == (10, 1010, 101)  # (10*100 + 10) / 10


def test_fifo_and_average_cost_on_the_same_trades() -> None:
    # BUY 10 @ 100, fees 10  -> lot 1: 10 shares costing 1010 (101 each)
    # BUY 10 @ 120, fees 10  -> lot 2: 10 shares costing 1210 (121 each)
    # SELL 15 @ 130, fees 15 -> proceeds 15*130 - 15 = 1935
    book = Book.replay(
        [
            buy("AAPL", "10", "100", "10", day=0),
            buy("AAPL", "10", "120", "10", day=1),
            sell("AAPL", "15", "130", "15", day=2),
        ]
    )
    fifo = book.position("AAPL", D(140), method=CostMethod.FIFO)
    average = book.position("AAPL", D(140), method=CostMethod.AVERAGE)
    # FIFO: the sold 15 are lot 1 (1010) and 5 of lot 2 (5*121 = 605): cost 1615.
    #       realized 1935 - 1615 = 320; left: 5 shares costing 605 (121 each).
    assert (fifo.realized_gain, fifo.cost_basis, fifo.average_cost) == (320, 605, 121)
    # Average: 2220 for 20 shares = 111 each; the sold 15 cost 1665.
    #       realized 1935 - 1665 = 270; left: 5 shares costing 555 (111 each).
    assert (average.realized_gain, average.cost_basis, average.average_cost) == (270, 555, 111)
    # At 140 the 5 shares are worth 700: unrealized FIFO 700-605 = 95, average 700-555 = 145.
    assert (fifo.unrealized_gain, average.unrealized_gain) == (95, 145)
    # Either way realized + unrealized = 700 + 1935 - 2220 = 415.
    assert fifo.realized_gain + fifo.unrealized_gain == 415
    assert average.realized_gain + average.unrealized_gain == 415
    assert fifo.quantity == average.quantity == 5
    assert [(lot.quantity, lot.cost) for lot in fifo.lots] == [(5, 605)]


def test_partial_sells_consume_lots_oldest_first_across_several_lots() -> None:
    book = Book.replay(
        [
            buy("MSFT", "5", "10", day=0),  # lot A: 5 costing 50
            buy("MSFT", "5", "20", day=1),  # lot B: 5 costing 100
            buy("MSFT", "5", "30", day=2),  # lot C: 5 costing 150
            sell("MSFT", "7", "25", day=3),  # all of A (50) + 2 of B (40): cost 90
        ]
    )
    assert [(lot.quantity, lot.cost) for lot in book.lots("MSFT")] == [(3, 60), (5, 150)]
    assert book.realized_gain() == 7 * 25 - 90  # 85
    book.record(sell("MSFT", "4", "25", day=4))  # 3 of B (60) + 1 of C (30): cost 90
    assert [(lot.quantity, lot.cost) for lot in book.lots("MSFT")] == [(4, 120)]
    assert book.realized_gain() == 85 + 4 * 25 - 90  # 95


def test_fractional_shares_are_bought_and_sold() -> None:
    book = Book.replay(
        [
            buy("NVDA", "0.5", "200", day=0),  # cost 100
            buy("NVDA", "0.25", "240", day=1),  # cost 60
            sell("NVDA", "0.6", "250", "0.50", day=2),  # proceeds 150 - 0.50 = 149.50
        ]
    )
    # FIFO cost of 0.6: all of the 0.5 lot (100) + 0.1 of the second (0.1 * 240 = 24) = 124.
    position = book.position("NVDA", D(250))
    assert position.realized_gain == D("25.50")  # 149.50 - 124
    assert position.quantity == D("0.15")
    assert position.cost_basis == 36  # 0.15 * 240
    assert position.market_value == D("37.50")


def test_trades_replay_in_time_order_with_ties_broken_by_sequence() -> None:
    same_time = at(0)
    first = new_trade(Side.BUY, "AAPL", D(1), D(100), D(0), same_time, now=NOW, sequence=1)
    second = new_trade(Side.SELL, "AAPL", D(1), D(110), D(0), same_time, now=NOW, sequence=2)
    later = new_trade(Side.BUY, "AAPL", D(1), D(90), D(0), at(1), now=NOW, sequence=0)
    book = Book.replay([later, second, first])
    assert book.trades == (first, second, later)
    assert book.realized_gain() == 10
    assert book.lots("AAPL")[0].cost == 90


# --- oversell ----------------------------------------------------------------------------------


def test_selling_more_than_held_is_rejected_and_records_nothing() -> None:
    book = Book.replay([deposit("5000"), buy("AAPL", "10", "150", "1", day=1)])
    before = state(book)
    with pytest.raises(InsufficientShares) as caught:
        book.record(sell("AAPL", "12", "160", day=2))
    error = caught.value
    assert error.message == "cannot sell 12 AAPL: only 10 held (short by 2)"
    assert (error.symbol, error.held, error.requested, error.shortfall) == ("AAPL", 10, 12, 2)
    assert isinstance(error, FailedPrecondition)
    assert error.reason == "INSUFFICIENT_SHARES"
    assert state(book) == before


def test_selling_a_symbol_never_held_names_zero_held() -> None:
    with pytest.raises(InsufficientShares, match=r"cannot sell 0.5 TSLA: only 0 held \(short"):
        Book().record(sell("TSLA", "0.5", "200"))


def test_a_backdated_sell_that_leaves_a_later_sell_short_is_rejected_and_records_nothing() -> None:
    book = Book.replay([buy("AAPL", "10", "100", day=0), sell("AAPL", "10", "120", day=8)])
    before = state(book)
    with pytest.raises(InsufficientShares, match="cannot sell 10 AAPL: only 5 held"):
        book.record(sell("AAPL", "5", "110", day=3))
    assert state(book) == before


def test_a_backdated_trade_is_replayed_into_its_place() -> None:
    book = Book.replay([buy("AAPL", "10", "100", day=0), sell("AAPL", "10", "120", day=8)])
    book.record(buy("AAPL", "5", "80", day=3))
    assert [t.sequence for t in book.trades] == [0, 3, 8]
    # The day-8 sell now takes the 10 @ 100 first: realized 10*120 - 1000 = 200.
    assert book.realized_gain() == 200
    assert [(lot.quantity, lot.cost) for lot in book.lots("AAPL")] == [(5, 400)]


def test_a_backdated_trade_leaves_every_part_of_the_book_as_a_full_replay_would() -> None:
    early = [
        deposit("500", day=0),
        buy("AAPL", "10", "100", day=1),
        sell("AAPL", "4", "120", day=9),
    ]
    late = [dividend("AAPL", "6", "0.5", day=10), withdraw("50", day=11)]
    backdated = buy("AAPL", "5", "80", "1", day=3)
    book = Book.replay([*early, *late])
    book.record(backdated)
    replayed = Book.replay([*early, backdated, *late])
    # Compared attribute by attribute: state added to the book later is covered too.
    assert vars(book).keys() == vars(replayed).keys()
    assert {k: v for k, v in vars(book).items()} == vars(replayed)


# --- cash --------------------------------------------------------------------------------------


def test_cash_follows_deposits_buys_sells_dividends_and_withdrawals() -> None:
    book = Book.replay(
        [
            deposit("1000", day=0),  # 1000
            buy("AAPL", "5", "100", "1", day=1),  # - (500 + 1)      = 499
            sell("AAPL", "2", "110", "1", day=2),  # + (220 - 1)      = 718
            dividend("AAPL", "3", "0.5", day=3),  # + 1.50           = 719.50
            withdraw("200", day=4),  # - 200            = 519.50
        ]
    )
    assert book.cash == D("519.50")
    assert (book.dividends, book.fees) == (D("1.5"), 2)
    assert (book.deposits, book.withdrawals, book.funded) == (1000, 200, 0)


def test_withdrawing_more_than_the_cash_balance_is_rejected_and_records_nothing() -> None:
    book = Book.replay([deposit("100")])
    before = state(book)
    with pytest.raises(InsufficientCash) as caught:
        book.record(withdraw("150", day=1))
    assert caught.value.message == (
        "cannot withdraw 150.00: needs 150.00 in cash, only 100.00 available (short by 50.00)"
    )
    assert caught.value.reason == "INSUFFICIENT_CASH"
    assert state(book) == before


def test_recording_real_trades_without_deposits_funds_the_shortfall_as_money_brought_in() -> None:
    book = Book.replay([deposit("100", day=0), buy("AAPL", "2", "100", "1", day=1)])
    # The buy costs 201; cash covers 100, the other 101 came from outside.
    assert book.cash == 0
    assert [(f.amount, f.implicit) for f in book.flows] == [(100, False), (101, True)]
    assert book.totals({}).total_cost == 201


def test_paper_trading_refuses_a_buy_that_cash_does_not_cover() -> None:
    book = Book.replay([deposit("100")], policy=CashPolicy.REQUIRE_CASH)
    before = state(book)
    with pytest.raises(InsufficientCash, match=r"cannot buy 2 AAPL: needs 201.00 in cash"):
        book.record(buy("AAPL", "2", "100", "1", day=1))
    assert state(book) == before


# --- positions and totals ----------------------------------------------------------------------


def test_portfolio_totals_reconcile_by_hand() -> None:
    book = Book.replay(
        [
            deposit("10000", day=0),
            buy("AAPL", "50", "100", "5", day=1),  # cost 5005
            buy("MSFT", "10", "300", "5", day=2),  # cost 3005
            sell("AAPL", "20", "110", "5", day=3),  # proceeds 2195, FIFO cost 20*100.1 = 2002
            dividend("MSFT", "10", "0.75", day=4),  # 7.50
            withdraw("1000", day=5),
        ]
    )
    totals = book.totals({"AAPL": D(120), "MSFT": D(310)})
    # cash: 10000 - 5005 - 3005 + 2195 + 7.50 - 1000 = 3192.50
    assert totals.cash == D("3192.50")
    # market: AAPL 30*120 = 3600, MSFT 10*310 = 3100
    assert totals.market_value == 6700
    assert totals.total_value == D("9892.50")
    # cost basis of what is held: AAPL 30*100.1 = 3003, MSFT 3005
    assert totals.cost_basis == 6008
    # money in, net: 10000 deposited - 1000 withdrawn
    assert totals.total_cost == 9000
    assert totals.total_gain_loss == D("892.50")  # 9892.50 - 9000
    assert totals.total_return == D("892.50") / 9000
    assert present_percent(totals.total_return) == "9.92"
    # the same gain, by source: realized 193 + unrealized (597 + 95) + dividends 7.50
    assert totals.realized_gain == 193
    assert totals.unrealized_gain == 692
    assert totals.total_gain_loss == totals.realized_gain + totals.unrealized_gain + D("7.50")
    assert (totals.dividends, totals.fees) == (D("7.5"), 15)


def test_position_weights_and_cash_make_up_the_whole_portfolio() -> None:
    book = Book.replay([deposit("1000"), buy("AAPL", "3", "100", day=1), buy("MSFT", "1", "200")])
    positions = book.positions({"AAPL": D(100), "MSFT": D(200)})
    # total value: 300 + 200 + cash 500 = 1000
    assert [(p.symbol, p.weight) for p in positions] == [("AAPL", D("0.3")), ("MSFT", D("0.2"))]
    assert sum((p.weight or D(0) for p in positions), book.cash / 1000) == 1


def test_a_symbol_without_a_quote_is_valued_at_its_last_trade_price() -> None:
    book = Book.replay([buy("AAPL", "10", "100"), buy("AAPL", "5", "104", day=1)])
    assert book.totals({}).market_value == 15 * 104
    assert book.position("AAPL").price == 104


def test_closed_positions_keep_their_realized_gain_but_leave_the_list() -> None:
    book = Book.replay([buy("AAPL", "10", "100"), sell("AAPL", "10", "90", "2", day=1)])
    assert book.positions({}) == []
    (closed,) = book.positions({}, include_closed=True)
    assert (closed.quantity, closed.cost_basis, closed.average_cost) == (0, 0, None)
    assert closed.realized_gain == -102  # 900 - 2 - 1000


def test_the_total_return_is_undefined_when_no_money_is_in() -> None:
    totals = Book.replay([deposit("100"), withdraw("100", day=1)]).totals({})
    assert (totals.total_cost, totals.total_return) == (0, None)
    assert present_percent(totals.total_return) == ""


def test_an_unknown_position_is_not_found() -> None:
    with pytest.raises(NotFound, match="no trades in AAPL"):
        Book().position("AAPL")


# --- splits ------------------------------------------------------------------------------------


def test_a_split_multiplies_lot_quantities_and_keeps_their_cost() -> None:
    book = Book.replay(
        [buy("NVDA", "10", "300", day=0), sell("NVDA", "30", "100", day=40)],
        splits=[Split("NVDA", D(3), at(20))],
    )
    # 10 shares costing 3000 become 30 costing 3000 (100 each); selling 30 at 100 gains 0.
    assert book.realized_gain() == 0
    assert book.quantity("NVDA") == 0


def test_a_reverse_split_is_a_ratio_below_one() -> None:
    book = Book.replay([buy("GE", "80", "10", day=0)])
    book.record(Split("GE", D("0.125"), at(5)))  # 1-for-8
    assert [(lot.quantity, lot.cost, lot.unit_cost) for lot in book.lots("GE")] == [(10, 800, 80)]
    assert book.position("GE").price == 80  # the last trade price, split-adjusted


def test_a_split_ratio_must_be_positive() -> None:
    with pytest.raises(InvalidArgument, match="ratio"):
        Split("GE", D(0), at(0))


def test_a_split_price_must_be_positive_when_given() -> None:
    with pytest.raises(InvalidArgument, match="price"):
        Split("GE", D(2), at(0), price=D(0))


# --- splits: dust paid out as cash in lieu ----------------------------------------------------


def test_a_split_rounds_the_position_down_and_pays_the_dust_as_cash_in_lieu() -> None:
    # The case: 0.12345679 shares (cost 9.99999999, 81 each) split 3:2 are 0.185185185,
    # one digit finer than the quantity scale. 0.18518518 are kept; 0.000000005 are sold at the
    # split's price, 60: proceeds 0.0000003, cost 0.000000005 * 54 = 0.00000027, gain 0.00000003.
    assert QUANTITY_PLACES == 8
    book = Book.replay(
        [buy("NVDA", "0.12345679", "81", day=0)],
        splits=[Split("NVDA", D("1.5"), at(5), price=D(60))],
    )
    assert book.quantity("NVDA") == D("0.18518518")
    assert [(lot.quantity, lot.cost) for lot in book.lots("NVDA")] == [
        (D("0.18518518"), D("9.99999972"))
    ]
    assert book.cash_in_lieu == (
        CashInLieu(
            symbol="NVDA",
            at=at(5),
            quantity=D("0.000000005"),
            price=D(60),
            proceeds=D("0.0000003"),
            fifo_cost=D("0.00000027"),
            average_cost=D("0.00000027"),
        ),
    )
    assert book.cash == D("0.0000003")  # the buy was funded from outside; the lieu is cash
    for method in CostMethod:
        position = book.position("NVDA", method=method)
        assert (position.quantity, position.cost_basis) == (D("0.18518518"), D("9.99999972"))
        assert position.realized_gain == D("0.00000003")
    assert book.open_symbols() == ["NVDA"]


def test_without_a_split_price_the_dust_is_sold_at_the_last_trade_price_split_adjusted() -> None:
    book = Book.replay(
        [
            buy("NVDA", "1.12345679", "81", day=0),  # cost 90.99999999, 81 each
            sell("NVDA", "1", "90", day=1),  # cost 81, gain 9; last trade price 90
        ],
        splits=[Split("NVDA", D("1.5"), at(5))],
    )
    (lieu,) = book.cash_in_lieu
    # 90 before the split is 60 after it: 0.000000005 * 60 = 0.0000003 for shares costing 54 each.
    assert (lieu.quantity, lieu.price, lieu.proceeds) == (D("0.000000005"), 60, D("0.0000003"))
    assert lieu.realized_gain(CostMethod.FIFO) == D("0.00000003")
    assert book.realized_gain() == 9 + D("0.00000003")
    assert book.last_trade_price("NVDA") == (at(1), 60)
    assert book.cash == 90 + D("0.0000003")


def test_a_split_that_leaves_no_dust_pays_no_cash() -> None:
    book = Book.replay(
        [buy("NVDA", "10", "300", day=0)], splits=[Split("NVDA", D(3), at(20), price=D(101))]
    )
    assert (book.quantity("NVDA"), book.cash_in_lieu, book.cash, book.realized_gain()) == (
        30,
        (),
        0,
        0,
    )


def test_a_position_that_is_all_dust_after_a_reverse_split_is_closed_and_paid_in_cash() -> None:
    # 0.00000005 shares (cost 0.000005) in a 1-for-10 are 0.000000005: nothing survives rounding.
    book = Book.replay(
        [buy("GE", "0.00000005", "100", day=0)],
        splits=[Split("GE", D("0.1"), at(5), price=D(1200))],
    )
    assert book.quantity("GE") == 0
    assert book.lots("GE") == ()
    assert book.open_symbols() == []
    assert book.positions({}) == []
    (lieu,) = book.cash_in_lieu
    assert (lieu.quantity, lieu.proceeds, lieu.fifo_cost, lieu.average_cost) == (
        D("0.000000005"),
        D("0.000006"),
        D("0.000005"),
        D("0.000005"),
    )
    (closed,) = book.positions({}, include_closed=True)
    assert (closed.quantity, closed.cost_basis, closed.average_cost) == (0, 0, None)
    assert closed.realized_gain == D("0.000001")
    assert book.cash == D("0.000006")


def test_under_fifo_the_dust_comes_off_the_oldest_lot_and_under_average_at_the_average() -> None:
    book = Book.replay(
        [
            buy("NVDA", "0.12345679", "81", day=0),  # lot A: cost 9.99999999; 54 each after
            buy("NVDA", "1", "90", day=1),  # lot B: cost 90; 60 each after
        ],
        splits=[Split("NVDA", D("1.5"), at(5), price=D(60))],
    )
    # 1.685185185 after the split: 1.68518518 kept, 0.000000005 sold, as a SELL would sell it.
    assert book.quantity("NVDA") == D("1.68518518")
    assert [(lot.quantity, lot.cost) for lot in book.lots("NVDA")] == [
        (D("0.18518518"), D("9.99999972")),  # A, the oldest, gives up the dust
        (D("1.5"), D(90)),  # B untouched
    ]
    (lieu,) = book.cash_in_lieu
    assert lieu.fifo_cost == D("0.00000027")
    average_cost = D("99.99999999") * D("0.000000005") / D("1.685185185")
    assert lieu.average_cost == average_cost  # the running average of both lots
    fifo = book.position("NVDA", method=CostMethod.FIFO)
    average = book.position("NVDA", method=CostMethod.AVERAGE)
    assert (fifo.cost_basis, fifo.realized_gain) == (D("99.99999972"), D("0.00000003"))
    with localcontext(Context(prec=100)):
        assert average.cost_basis == D("99.99999999") - average_cost
        assert average.realized_gain == D("0.0000003") - average_cost


def test_dust_larger_than_the_oldest_lot_empties_it_and_takes_the_rest_from_the_next() -> None:
    # A 0.35 split of 0.00000001 (A) and 1.00000001 (B): 0.0000000035 + 0.3500000035.
    # 0.35 kept; the 0.000000007 of dust is all of A and 0.0000000035 of B, each costing 0.000001.
    book = Book.replay(
        [buy("NVDA", "0.00000001", "100", day=0), buy("NVDA", "1.00000001", "100", day=1)],
        splits=[Split("NVDA", D("0.35"), at(5), price=D(300))],
    )
    assert [(lot.quantity, lot.cost, lot.opened_at) for lot in book.lots("NVDA")] == [
        (D("0.35"), D(100), at(1))
    ]
    (lieu,) = book.cash_in_lieu
    assert (lieu.quantity, lieu.proceeds, lieu.fifo_cost) == (
        D("0.000000007"),
        D("0.0000021"),
        D("0.000002"),
    )
    assert book.realized_gain() == D("0.0000001")


def test_the_whole_rounded_position_can_be_sold_and_leaves_nothing_open() -> None:
    book = Book.replay(
        [buy("NVDA", "0.12345679", "81", day=0)],
        splits=[Split("NVDA", D("1.5"), at(5), price=D(60))],
    )
    book.record(sell("NVDA", "0.18518518", "70", day=6))  # what the position shows
    assert book.quantity("NVDA") == 0
    assert book.lots("NVDA") == ()
    assert book.open_symbols() == []
    # 0.18518518 * 70 - 9.99999972 = 2.96296288, after the lieu's 0.00000003.
    assert book.realized_gain() == D("2.96296291")
    assert book.cash == D("0.0000003") + D("12.9629626")


def test_selling_the_unrounded_quantity_after_a_split_is_refused_and_records_nothing() -> None:
    book = Book.replay(
        [buy("NVDA", "0.12345679", "81", day=0)],
        splits=[Split("NVDA", D("1.5"), at(5), price=D(60))],
    )
    before = (state(book), book.cash_in_lieu)
    with pytest.raises(InsufficientShares) as refused:
        book.record(sell("NVDA", "0.18518519", "70", day=6))
    assert (refused.value.held, refused.value.requested) == (D("0.18518518"), D("0.18518519"))
    assert (state(book), book.cash_in_lieu) == before


def test_a_back_dated_split_replays_to_the_same_book_as_a_split_given_up_front() -> None:
    trades = [buy("NVDA", "0.12345679", "81", day=0), buy("NVDA", "1", "90", day=10)]
    split = Split("NVDA", D("1.5"), at(5), price=D(60))
    recorded = Book.replay(trades)
    recorded.record(split)  # dated before the last trade: the whole history replays
    replayed = Book.replay(trades, splits=[split])
    assert (state(recorded), recorded.cash_in_lieu) == (state(replayed), replayed.cash_in_lieu)
    assert recorded.quantity("NVDA") == D("1.18518518")  # 0.18518518 + 1 bought after


# --- properties --------------------------------------------------------------------------------


@settings(deadline=None)
@given(share_histories)
def test_lots_always_sum_to_the_position_quantity(steps: list[tuple[object, ...]]) -> None:
    trades = valid_trades(steps)
    book = Book.replay(trades)
    bought = sum((t.quantity for t in trades if t.side is Side.BUY), D(0))
    sold = sum((t.quantity for t in trades if t.side is Side.SELL), D(0))
    assert sum((lot.quantity for lot in book.lots("AAPL")), D(0)) == book.quantity("AAPL")
    assert book.quantity("AAPL") == bought - sold


@given(st.lists(quantities, min_size=1, max_size=5), prices)
def test_buying_then_selling_everything_at_the_same_price_without_fees_gains_nothing(
    lots: list[Decimal], price: Decimal
) -> None:
    total = sum(lots, D(0))
    trades = [buy("AAPL", plain(q), plain(price), day=i) for i, q in enumerate(lots)]
    book = Book.replay([*trades, sell("AAPL", plain(total), plain(price), day=len(lots))])
    assert book.realized_gain(CostMethod.FIFO) == 0
    assert book.realized_gain(CostMethod.AVERAGE) == 0
    assert book.lots("AAPL") == ()


@settings(deadline=None)
@given(share_histories)
def test_cost_basis_is_never_negative(steps: list[tuple[object, ...]]) -> None:
    book = Book()
    for t in valid_trades(steps):
        book.record(t)
        for method in CostMethod:
            assert book.position("AAPL", method=method).cost_basis >= 0
        assert all(lot.cost >= 0 and lot.quantity > 0 for lot in book.lots("AAPL"))


@settings(deadline=None)
@given(share_histories, prices)
def test_realized_plus_unrealized_is_value_plus_proceeds_minus_cost_paid(
    steps: list[tuple[object, ...]], price: Decimal
) -> None:
    # For one symbol, whatever the cost method:
    #   realized + unrealized == quantity * price + sum(sell amount - sell fees)
    #                                             - sum(buy amount + buy fees)
    trades = valid_trades(steps)
    book = Book.replay(trades)
    proceeds = sum((t.amount - t.fees for t in trades if t.side is Side.SELL), D(0))
    paid = sum((t.amount + t.fees for t in trades if t.side is Side.BUY), D(0))
    for method in CostMethod:
        p = book.position("AAPL", price, method=method)
        identity = p.market_value + proceeds - paid
        assert abs(p.realized_gain + p.unrealized_gain - identity) < D("1e-12")


@settings(deadline=None)
@given(mixed_histories, prices)
def test_total_gain_is_realized_plus_unrealized_plus_dividends_less_cash_side_fees(
    steps: list[tuple[object, ...]], price: Decimal
) -> None:
    book = Book.replay(valid_trades(steps))
    totals = book.totals({"AAPL": price})
    assert totals.cash >= 0
    assert totals.total_value - totals.total_cost == totals.total_gain_loss
    by_source = (
        totals.realized_gain + totals.unrealized_gain + totals.dividends - book.cash_side_fees
    )
    assert abs(totals.total_gain_loss - by_source) < D("1e-12")


@settings(deadline=None)
@given(share_histories, ratios, st.none() | prices)
def test_a_split_keeps_lots_whole_on_the_scale_and_its_dust_leaves_the_basis_exactly(
    steps: list[tuple[object, ...]], ratio: Decimal, price: Decimal | None
) -> None:
    trades = valid_trades(steps)
    split = Split("AAPL", ratio, at(len(steps) + 1), price=price)
    unsplit = Book.replay(trades)
    book = Book.replay(trades, splits=[split])
    scale = D(1).scaleb(-QUANTITY_PLACES)
    exact = unsplit.quantity("AAPL") * ratio
    quantity = book.quantity("AAPL")
    with localcontext(Context(prec=200)):  # the test's own sums must not round either
        assert quantity == exact.quantize(scale, rounding=ROUND_DOWN)
        assert sum((lot.quantity for lot in book.lots("AAPL")), D(0)) == quantity
        fifo_basis = book.position("AAPL", method=CostMethod.FIFO).cost_basis
        assert sum((lot.cost for lot in book.lots("AAPL")), D(0)) == fifo_basis
        lieu = book.cash_in_lieu[0] if book.cash_in_lieu else None
        assert (lieu.quantity if lieu else D(0)) == exact - quantity
        for method in CostMethod:
            before = unsplit.position("AAPL", method=method)
            after = book.position("AAPL", method=method)
            dust_cost = lieu.cost(method) if lieu else D(0)
            assert before.cost_basis == after.cost_basis + dust_cost
            dust_gain = lieu.realized_gain(method) if lieu else D(0)
            assert after.realized_gain == before.realized_gain + dust_gain
        assert book.cash == unsplit.cash + (lieu.proceeds if lieu else D(0))
    assert (book.open_symbols() == ["AAPL"]) == (quantity > 0)
    assert all(lot.quantity > 0 and lot.cost >= 0 for lot in book.lots("AAPL"))


@settings(deadline=None)
@given(share_histories, ratios, prices)
def test_replaying_the_same_trades_and_splits_gives_the_same_book(
    steps: list[tuple[object, ...]], ratio: Decimal, price: Decimal
) -> None:
    trades = valid_trades(steps)
    split = Split("AAPL", ratio, at(len(steps) + 1), price=price)
    replayed = Book.replay(trades, splits=[split])
    again = Book.replay(list(reversed(trades)), splits=[split])
    recorded = Book()
    recorded.record(split)
    for t in trades:  # each dated before the split: the whole history replays
        recorded.record(t)
    for other in (again, recorded):
        assert (state(other), other.cash_in_lieu) == (state(replayed), replayed.cash_in_lieu)


@settings(deadline=None)
@given(share_histories, quantities)
def test_a_refused_sell_never_changes_the_book(
    steps: list[tuple[object, ...]], extra: Decimal
) -> None:
    book = Book.replay(valid_trades(steps))
    before = state(book)
    too_many = book.quantity("AAPL") + extra
    with pytest.raises(InsufficientShares):
        book.record(sell("AAPL", plain(too_many), "100", day=len(steps)))
    assert state(book) == before
