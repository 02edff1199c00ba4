"""A history rewritten (services/portfolio/history_rewrite.py), without a server: the market-paid
dividends after the change are recomputed from the shares the new history holds at their
ex-dates (by the payer's own `held_at_ex_date` and `payout`), one on no shares goes, a user's
dividend and those before the change stay, and the book is the replay of the history with the
new amounts; a trade that would not hold is named in the refusal."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.portfolio.dividends import held_at_ex_date, payout
from services.portfolio.domain import Book, CashPolicy, Side, Split, Trade
from services.portfolio.history_rewrite import Change, rewritten
from services.runtime.errors import FailedPrecondition

D = Decimal
PAPER = CashPolicy.REQUIRE_CASH


def at(day: int, hour: int = 15) -> datetime:
    return datetime(2024, 5, day, hour, tzinfo=UTC)


def trade(n: int, side: Side, symbol: str, quantity: str, price: str, when: datetime) -> Trade:
    return Trade(side, symbol, D(quantity), D(price), D(0), when, sequence=n, id=f"t{n}")


def paid(n: int, symbol: str, shares: str, per_share: str, ex_date: date) -> Trade:
    """A dividend as the payer records it (its id is then noted as market-paid)."""
    return replace(payout(symbol, ex_date, D(shares), D(per_share)), sequence=n, id=f"t{n}")


DEPOSIT = trade(1, Side.DEPOSIT, "", "20000", "1", at(1, 9))
FIRST = trade(2, Side.BUY, "JNJ", "10", "150", at(1))
TYPO = trade(3, Side.BUY, "JNJ", "5", "150", at(2))
EARLY = paid(4, "JNJ", "10", "0.5", date(2024, 5, 2))  # ex-date before the typo's buy
LATER = paid(5, "JNJ", "15", "1.24", date(2024, 5, 15))
USERS = trade(6, Side.DIVIDEND, "JNJ", "15", "1", at(20, 0))  # the user's own figure
HISTORY = [DEPOSIT, FIRST, TYPO, EARLY, LATER, USERS]
MARKET = {EARLY.id, LATER.id}


def without(gone: Trade, history: list[Trade] = HISTORY) -> Change:
    return Change([t for t in history if t.id != gone.id], gone.executed_at, "deleting it")


def test_a_buy_taken_back_recomputes_the_later_market_dividend_and_leaves_the_rest() -> None:
    done = rewritten(PAPER, without(TYPO), [], MARKET)
    recomputed = replace(LATER, quantity=D(10))
    assert (done.adjusted, done.dropped) == ([recomputed], [])
    # The payer's own figure for the history without the typo.
    left = [t for t in HISTORY if t.id != TYPO.id]
    assert held_at_ex_date(left, [], "JNJ", LATER.day, PAPER) == 10
    assert recomputed.amount == payout("JNJ", LATER.day, D(10), D("1.24")).amount == D("12.4")
    # The book is the replay of the history with the new amount.
    expected = Book.replay([recomputed if t.id == LATER.id else t for t in left], policy=PAPER)
    assert done.book.state() == expected.state()
    assert done.book.dividends == D(5) + D("12.4") + D(15)


def test_one_on_no_shares_goes_and_a_split_on_the_ex_date_counts() -> None:
    history = [DEPOSIT, TYPO, LATER, USERS]
    done = rewritten(PAPER, without(TYPO, history), [], {LATER.id})
    assert (done.adjusted, done.dropped) == ([], [LATER])
    assert done.book.dividends == D(15)

    # A 2-for-1 split effective on the ex-date: the dividend is per share as they trade then.
    split = Split("JNJ", D(2), datetime(2024, 5, 15, tzinfo=UTC))
    done = rewritten(PAPER, without(TYPO), [split], MARKET)
    assert [(t.id, t.quantity) for t in done.adjusted] == [(LATER.id, D(20))]


def test_an_unchanged_holding_changes_nothing_and_a_users_dividend_is_never_recomputed() -> None:
    extra = trade(8, Side.DEPOSIT, "", "100", "1", at(3))
    deposit_gone = rewritten(PAPER, without(extra, [*HISTORY, extra]), [], MARKET)
    assert (deposit_gone.adjusted, deposit_gone.dropped) == ([], [])
    # Not marked the market's: the same dividends are the user's figures.
    done = rewritten(PAPER, without(TYPO), [], set())
    assert (done.adjusted, done.dropped) == ([], [])
    assert done.book.dividends == D(5) + D("18.6") + D(15)


def test_a_trade_that_would_not_hold_is_named_and_the_edited_one_says_so() -> None:
    sell = trade(7, Side.SELL, "JNJ", "12", "160", at(21))
    history = [*HISTORY, sell]
    with pytest.raises(FailedPrecondition) as refused:
        rewritten(PAPER, without(TYPO, history), [], MARKET)
    assert refused.value.reason == "INSUFFICIENT_SHARES"
    assert refused.value.message == (
        "deleting it would leave the sell of 12 JNJ on 2024-05-21 impossible: cannot sell 12"
        " JNJ: only 10 held (short by 2)"
    )
    assert refused.value.data["tradeId"] == sell.id

    raised = replace(sell, quantity=D(20))
    edit = Change(
        [raised if t.id == sell.id else t for t in history],
        sell.executed_at,
        "editing the sell",
        edited_id=sell.id,
    )
    with pytest.raises(FailedPrecondition) as itself:
        rewritten(PAPER, edit, [], MARKET)
    assert itself.value.message == (
        "editing the sell would make it impossible: cannot sell 20 JNJ: only 15 held (short by 5)"
    )
    assert itself.value.data["tradeId"] == sell.id
