"""A portfolio's stored book: a book resumed from its state (through its stored JSON) takes the
next trades exactly as a replay of the whole history does - the same lots, positions, cash,
totals and the same refusals - and a back-dated trade needs the history."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.portfolio import book_states
from services.portfolio.book_states import StoredBook
from services.portfolio.domain import (
    Book,
    CashPolicy,
    CostMethod,
    HistoryMissing,
    Side,
    Trade,
    TradedSymbols,
    order_key,
)
from services.runtime.errors import FailedPrecondition
from tests.unit.book_trades import at

D = Decimal
SYMBOLS = ("AAPL", "KO")


def stored(book: Book, last_sequence: int = 0) -> StoredBook:
    """The book as the database gives it back: encoded and decoded."""
    decoded = book_states.decode(book_states.encode(StoredBook(book.state(), last_sequence)))
    assert decoded is not None
    return decoded


def exact(book: Book) -> str:
    """Every digit and exponent of the book's state, to compare books exactly."""
    return book_states.encode(StoredBook(book.state(), 0))


def answers(book: Book) -> object:
    return (
        exact(book),
        [book.positions({}, method=m, include_closed=True) for m in CostMethod],
        [book.totals({"AAPL": D("123.45")}, method=m) for m in CostMethod],
        book.cash,
        book.open_symbols(),
    )


def refusal(error: FailedPrecondition) -> object:
    return type(error), error.message, dict(vars(error))


# --- steps drawn by hypothesis ------------------------------------------------------------------

quantities = st.decimals(min_value=D("0.00000001"), max_value=D(1_000), places=8)
prices = st.decimals(min_value=D("0.01"), max_value=D(2_000), places=6)
fees = st.decimals(min_value=D(0), max_value=D(20), places=2)
# Above 1: sells and withdrawals of more than there is, to be refused.
fractions = st.decimals(min_value=D("0.01"), max_value=D("1.3"), places=2)
sides = st.sampled_from(list(Side))
# A step: side, symbol, amount (a quantity; a fraction of what is held for sells and
# withdrawals), price, fees, and how far back it is dated (0: now, after everything before it).
steps = st.lists(
    st.tuples(
        sides,
        st.sampled_from(SYMBOLS),
        quantities,
        fractions,
        prices,
        fees,
        st.one_of(st.just(0), st.just(0), st.integers(min_value=1, max_value=40)),
    ),
    min_size=1,
    max_size=30,
)


def trade_of(step: tuple[object, ...], reference: Book, number: int) -> Trade:
    side, symbol, quantity, fraction, price, fee, back = step
    assert isinstance(side, Side) and isinstance(symbol, str)
    assert isinstance(quantity, Decimal) and isinstance(fraction, Decimal)
    assert isinstance(price, Decimal) and isinstance(fee, Decimal) and isinstance(back, int)
    if side is Side.SELL:
        held = reference.quantity(symbol)
        quantity = (held * fraction).quantize(D("0.00000001")) if held else quantity
    elif side is Side.WITHDRAWAL:
        cash = reference.cash
        quantity = (cash * fraction).quantize(D("0.01")) if cash > 0 else quantity
    if quantity <= 0:
        quantity = D("0.00000001")
    if not side.trades_shares:
        price = D(1) if side is not Side.DIVIDEND else price
    # Time moves on a day per trade; a back-dated one lands `back` days before the latest,
    # possibly at the very instant of an earlier trade (then sequence breaks the tie).
    when = at(number) if back == 0 else at(max(0, number - back))
    return Trade(
        side,
        symbol if side.names_symbol else "",
        quantity,
        price,
        fee,
        when,
        sequence=number,
    )


def record_incrementally(
    saved: StoredBook | None, history: list[Trade], trade: Trade, policy: CashPolicy
) -> Book:
    """What Trades.append does: the stored book takes a trade in order; otherwise (or without
    a stored book) the whole history replays with it."""
    book = Book.resume(saved.state) if saved is not None else None
    if book is None or not book.takes_in_order(trade):
        book = Book(policy)
        for event in sorted([*history, trade], key=order_key):
            book.record(event)
        return book
    book.record(trade)
    return book


@settings(deadline=None, max_examples=300)
@given(steps, st.sampled_from(list(CashPolicy)))
def test_the_stored_book_takes_every_trade_exactly_as_a_full_replay_does(
    drawn: list[tuple[object, ...]], policy: CashPolicy
) -> None:
    history: list[Trade] = []
    saved: StoredBook | None = None
    for number, step in enumerate(drawn, start=1):
        reference = Book.replay(history, policy=policy)
        trade = trade_of(step, reference, number)
        expected: object
        try:
            reference.record(trade)
            expected = answers(reference)
        except FailedPrecondition as refused:
            expected = refusal(refused)
        try:
            got: object = answers(record_incrementally(saved, history, trade, policy))
        except FailedPrecondition as refused:
            got = refusal(refused)
        assert got == expected
        if isinstance(expected, tuple) and len(expected) == 5:
            history.append(trade)
            replayed = Book.replay(history, policy=policy)
            assert answers(replayed) == expected
            saved = stored(replayed, number)
            assert saved.last_sequence == number


def test_a_resumed_book_refuses_a_back_dated_trade_it_cannot_place() -> None:
    book = Book.replay([Trade(Side.BUY, "KO", D(10), D(60), D(0), at(5), sequence=1)])
    resumed = Book.resume(stored(book).state)
    back_dated = Trade(Side.SELL, "KO", D(1), D(61), D(0), at(2), sequence=2)
    assert not resumed.takes_in_order(back_dated)
    with pytest.raises(HistoryMissing):
        resumed.record(back_dated)
    assert exact(resumed) == exact(book)


def test_a_trade_at_the_same_instant_as_the_last_one_comes_after_it() -> None:
    book = Book.replay([Trade(Side.BUY, "KO", D(10), D(60), D(0), at(5), sequence=1)])
    resumed = Book.resume(stored(book).state)
    same_instant = Trade(Side.SELL, "KO", D(4), D(61), D(0), at(5), sequence=2)
    assert resumed.takes_in_order(same_instant)
    resumed.record(same_instant)
    assert resumed.quantity("KO") == 6


def test_a_resumed_book_names_the_symbols_held_since_a_moment_as_a_replay_does() -> None:
    """Held now, or bought or sold since: what the market split job asks about (a symbol sold
    at the moment itself was held until then)."""
    book = Book.replay(
        [
            Trade(Side.BUY, "AAPL", D(10), D(100), D(0), at(0), 1),
            Trade(Side.BUY, "MSFT", D(2), D(300), D(0), at(0), 2),
            Trade(Side.SELL, "MSFT", D(2), D(301), D(0), at(2), 3),
            Trade(Side.BUY, "KO", D(5), D(60), D(0), at(1), 4),
            Trade(Side.SELL, "KO", D(5), D(61), D(0), at(5), 5),
            Trade(Side.DIVIDEND, "KO", D(5), D("0.5"), D(0), at(8), 6),
        ]
    )
    resumed = Book.resume(stored(book, 6).state)
    for answering in (book, resumed):
        assert answering.held_since(at(0)) == ["AAPL", "KO", "MSFT"]
        assert answering.held_since(at(5)) == ["AAPL", "KO"]
        # A dividend paid after the sale is not a holding.
        assert answering.held_since(at(5, 1)) == ["AAPL"]


def test_the_symbols_kept_of_a_stored_book_answer_as_the_book_does() -> None:
    """What the market split job keeps of a stored book between rounds (TradedSymbols, from
    the decoded state, without resuming it) answers as the book itself."""
    book = Book.replay(
        [
            Trade(Side.BUY, "AAPL", D(10), D(100), D(0), at(0), 1),
            Trade(Side.BUY, "KO", D(5), D(60), D(0), at(1), 2),
            Trade(Side.SELL, "KO", D(5), D(61), D(0), at(5), 3),
            Trade(Side.DIVIDEND, "KO", D(5), D("0.5"), D(0), at(8), 4),
        ]
    )
    kept = TradedSymbols.of(stored(book, 4).state.holdings)
    assert kept == TradedSymbols(held=("AAPL",), last_traded=(("KO", at(5)),))
    for moment, held in ((at(0), ["AAPL", "KO"]), (at(5), ["AAPL", "KO"]), (at(5, 1), ["AAPL"])):
        assert kept.since(moment) == book.held_since(moment) == held


def test_decimals_and_times_come_back_digit_for_digit() -> None:
    when = datetime(2024, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)
    book = Book.replay(
        [
            Trade(Side.BUY, "KO", D("0.12345678"), D("123456789012.123456"), D("0.10"), when, 1),
            Trade(Side.SELL, "KO", D("0.00000001"), D("1E+2"), D("0"), when, 2),
            Trade(Side.DEPOSIT, "", D("100.00"), D(1), D("0.5"), when, 3),
            Trade(Side.WITHDRAWAL, "", D("10"), D(1), D(0), when, 4),
        ]
    )
    again = Book.resume(stored(book, 4).state)
    assert exact(again) == exact(book)
    assert (again.deposits, again.withdrawals, again.funded) == (
        book.deposits,
        book.withdrawals,
        book.funded,
    )
    assert str(again.lots("KO")[0].cost) == str(book.lots("KO")[0].cost)


def test_a_stored_book_of_another_format_is_not_read() -> None:
    text = book_states.encode(StoredBook(Book().state(), 0)).replace(
        f'"format":{book_states.FORMAT}', '"format":0'
    )
    assert book_states.decode(text) is None


def test_a_buy_on_a_resumed_book_passes_the_stored_lots_through_as_they_came() -> None:
    buys = [Trade(Side.BUY, "KO", D(1), D("60.5"), D(0), at(i), sequence=i + 1) for i in range(50)]
    saved = stored(Book.replay(buys), 50)
    lots_text = saved.state.holdings[0].lots.to_text()
    resumed = Book.resume(saved.state)
    resumed.record(Trade(Side.BUY, "KO", D(2), D(61), D(0), at(60), sequence=51))
    assert lots_text in book_states.encode(StoredBook(resumed.state(), 51))
    assert len(resumed.lots("KO")) == 51


def test_a_sell_on_a_resumed_book_takes_the_oldest_lots_first_as_a_replay_does() -> None:
    buys = [
        Trade(Side.BUY, "KO", D(i + 1), D(60 + i), D(0), at(i), sequence=i + 1) for i in range(5)
    ]
    sell = Trade(Side.SELL, "KO", D("4.5"), D(70), D(0), at(9), sequence=6)
    resumed = Book.resume(stored(Book.replay(buys), 5).state)
    resumed.record(sell)
    replayed = Book.replay([*buys, sell])
    assert resumed.lots("KO") == replayed.lots("KO")
    assert [lot.quantity for lot in resumed.lots("KO")] == [D("1.5"), D(4), D(5)]
    assert exact(resumed) == exact(replayed)


def test_a_resumed_book_adds_its_holdings_up_in_the_order_a_replay_does() -> None:
    # Found by the property test: bases of 28 significant digits, summed in another order
    # (symbols sorted instead of first traded), ended one digit apart.
    tiny, cent = D("1E-8"), D("0.010000")
    history = [Trade(Side.BUY, "AAPL", tiny, cent, D(0), at(1 + i), i + 1) for i in range(8)]
    history += [
        Trade(Side.BUY, "AAPL", tiny, D("0.090880"), D("1.01"), at(9), 9),
        Trade(Side.BUY, "AAPL", D("4.4E-7"), cent, D(0), at(10), 10),
        Trade(Side.BUY, "KO", tiny, cent, D("0.01"), at(11), 11),
        Trade(Side.BUY, "KO", tiny, cent, D(0), at(0), 12),  # back-dated: KO is traded first
    ]
    sell = Trade(Side.SELL, "AAPL", tiny, cent, D(0), at(13), 13)
    resumed = Book.resume(stored(Book.replay(history), 12).state)
    resumed.record(sell)
    replayed = Book.replay([*history, sell])
    assert answers(resumed) == answers(replayed)
