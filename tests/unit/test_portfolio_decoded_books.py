"""What the leader's rounds keep of the stored books from round to round (decoded_books.py): a
book is decoded again only when its stored text changed, a portfolio a round did not read is
forgotten, a round that did not finish keeps nothing of its own, and what is kept is bounded;
and the figures the revaluation keeps of a stored state value it exactly as the book does."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.portfolio import book_states
from services.portfolio.book_states import StoredBook
from services.portfolio.decoded_books import DecodedBooks
from services.portfolio.domain import Book, BookFigures, CostMethod, Totals
from tests.unit.book_trades import buy, deposit, dividend, mixed_histories, sell, valid_trades

D = Decimal


class CountingDecoder:
    """book_states.decode, noting every text it was given."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, text: str) -> StoredBook | None:
        self.texts.append(text)
        return book_states.decode(text)


def text_of(book: Book, last_sequence: int = 0) -> str:
    return book_states.encode(StoredBook(book.state(), last_sequence))


def held(stored: StoredBook) -> dict[str, Decimal]:
    return {h.symbol: h.quantity for h in stored.state.holdings if h.quantity}


def counted(
    keep_at_most: int | None = None,
) -> tuple[DecodedBooks[dict[str, Decimal]], CountingDecoder]:
    decoder = CountingDecoder()
    return DecodedBooks(held, decode=decoder, keep_at_most=keep_at_most), decoder


ONE_KO = text_of(Book.replay([buy("KO", "1", "60")]), 1)
TWO_KO = text_of(Book.replay([buy("KO", "1", "60"), buy("KO", "1", "61", day=1)]), 2)
TEN_AAPL = text_of(Book.replay([buy("AAPL", "10", "150")]), 1)


def one_round(books: DecodedBooks[dict[str, Decimal]], texts: dict[str, str]) -> dict[str, object]:
    this = books.round()
    found: dict[str, object] = dict(this.read(texts))
    this.finish()
    return found


def test_an_unchanged_text_is_not_decoded_again_and_a_changed_one_is() -> None:
    books, decoder = counted()
    assert one_round(books, {"a": ONE_KO, "b": TEN_AAPL}) == {
        "a": {"KO": D(1)},
        "b": {"AAPL": D(10)},
    }
    assert decoder.texts == [ONE_KO, TEN_AAPL]
    # Nothing changed: nothing decoded, the same answers.
    assert one_round(books, {"a": ONE_KO, "b": TEN_AAPL}) == {
        "a": {"KO": D(1)},
        "b": {"AAPL": D(10)},
    }
    assert decoder.texts == [ONE_KO, TEN_AAPL]
    # a's text changed (a trade stored with it, wherever it was recorded): a alone is decoded.
    assert one_round(books, {"a": TWO_KO, "b": TEN_AAPL})["a"] == {"KO": D(2)}
    assert decoder.texts == [ONE_KO, TEN_AAPL, TWO_KO]
    # Back to a text read before, but not by the last round: decoded again.
    assert one_round(books, {"a": ONE_KO, "b": TEN_AAPL})["a"] == {"KO": D(1)}
    assert decoder.texts == [ONE_KO, TEN_AAPL, TWO_KO, ONE_KO]
    assert books.decoded == 4


def test_a_round_tells_which_portfolios_changed_since_the_last() -> None:
    books, _ = counted()
    first = books.round()
    first.read({"a": ONE_KO})
    first.read({"b": TEN_AAPL})  # batch by batch
    assert first.changed == {"a", "b"}
    first.finish()
    second = books.round()
    second.read({"a": TWO_KO, "b": TEN_AAPL, "c": ONE_KO})
    assert second.changed == {"a", "c"}


def test_a_portfolio_the_round_did_not_read_is_forgotten() -> None:
    books, decoder = counted()
    one_round(books, {"a": ONE_KO, "b": TEN_AAPL})
    one_round(books, {"b": TEN_AAPL})  # a deleted
    assert len(books) == 1
    # The same id with the same text again (a portfolio is never re-created with its id, but a
    # forgotten one must not be answered from memory): decoded anew.
    one_round(books, {"a": ONE_KO, "b": TEN_AAPL})
    assert decoder.texts == [ONE_KO, TEN_AAPL, ONE_KO]


def test_a_round_that_did_not_finish_leaves_what_the_last_one_kept() -> None:
    books, decoder = counted()
    one_round(books, {"a": ONE_KO, "b": TEN_AAPL})
    failed = books.round()
    failed.read({"a": TWO_KO})  # the database went away before b was read
    assert len(books) == 2
    assert one_round(books, {"a": TWO_KO, "b": TEN_AAPL})["a"] == {"KO": D(2)}
    # a's new text was not kept by the round that failed: decoded again, b not.
    assert decoder.texts == [ONE_KO, TEN_AAPL, TWO_KO, TWO_KO]


def test_a_text_of_another_format_is_left_to_the_caller_every_round() -> None:
    books, decoder = counted()
    older = TEN_AAPL.replace(f'"format":{book_states.FORMAT}', '"format":1')
    for _ in range(2):
        assert one_round(books, {"a": ONE_KO, "old": older}) == {"a": {"KO": D(1)}}
    assert decoder.texts == [ONE_KO, older, older]


def test_past_the_bound_books_are_decoded_every_round_and_the_first_read_are_kept() -> None:
    books, decoder = counted(keep_at_most=2)
    texts = {"a": ONE_KO, "b": TEN_AAPL, "c": TWO_KO}
    one_round(books, texts)
    assert one_round(books, texts) == {"a": {"KO": D(1)}, "b": {"AAPL": D(10)}, "c": {"KO": D(2)}}
    assert len(books) == 2
    assert decoder.texts == [ONE_KO, TEN_AAPL, TWO_KO, TWO_KO]


def test_the_bound_is_on_the_weight_of_what_is_kept() -> None:
    decoder = CountingDecoder()
    # A portfolio weighs one and one more per symbol held: a and b (2 each) fill 4; c is not
    # kept, and neither is d (1) behind it: kept are the portfolios read first.
    books: DecodedBooks[dict[str, Decimal]] = DecodedBooks(
        held, decode=decoder, keep_at_most=4, weight=lambda symbols: 1 + len(symbols)
    )
    empty = text_of(Book.replay([deposit("10")]), 1)
    texts = {"a": ONE_KO, "b": TEN_AAPL, "c": TWO_KO, "d": empty}
    one_round(books, texts)
    one_round(books, texts)
    assert decoder.texts == [ONE_KO, TEN_AAPL, TWO_KO, empty, TWO_KO, empty]


def test_forgetting_keeps_nothing() -> None:
    books, decoder = counted()
    one_round(books, {"a": ONE_KO})
    books.forget()
    assert len(books) == 0
    one_round(books, {"a": ONE_KO})
    assert decoder.texts == [ONE_KO, ONE_KO]


def exactly(totals: Totals) -> dict[str, str]:
    """Every field with all its digits and exponent (Decimal equality would ignore both)."""
    return {name: repr(value) for name, value in vars(totals).items()}


def test_the_figures_of_a_stored_state_value_it_as_the_book_does() -> None:
    book = Book.replay(
        [
            deposit("1000"),
            buy("AAPL", "3", "150.25", "1"),
            buy("KO", "7", "60.1", "0.5", day=1),
            sell("KO", "7", "61", day=2),
            dividend("KO", "7", "0.44", day=3),
            buy("MSFT", "0.5", "400", day=4),
        ]
    )
    stored = book_states.decode(text_of(book, 6))
    assert stored is not None
    figures = BookFigures.of_state(stored.state)
    assert figures.open_symbols() == book.open_symbols() == ["AAPL", "MSFT"]
    # MSFT without a price: at its last trade, as the book values it.
    prices = {"AAPL": D("151.1234"), "KO": D("70")}
    assert exactly(figures.totals(prices)) == exactly(book.totals(prices))
    average = BookFigures.of_state(stored.state, CostMethod.AVERAGE)
    assert exactly(average.totals(prices)) == exactly(
        book.totals(prices, method=CostMethod.AVERAGE)
    )


@settings(max_examples=150, deadline=None)
@given(steps=mixed_histories, price=st.decimals(min_value=D("0.01"), max_value=D(5_000), places=4))
def test_any_history_stored_and_decoded_is_valued_digit_for_digit_as_its_book(
    steps: list[tuple[object, ...]], price: Decimal
) -> None:
    book = Book.replay(valid_trades(steps))
    stored = book_states.decode(text_of(book))
    assert stored is not None
    for prices in ({"AAPL": price}, {}):
        for method in CostMethod:
            kept = BookFigures.of_state(stored.state, method)
            assert exactly(kept.totals(prices)) == exactly(book.totals(prices, method=method))
