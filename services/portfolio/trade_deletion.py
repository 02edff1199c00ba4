"""Taking back a trade recorded by mistake (DeleteTrade): a typo in a quantity or a price, an
import's row twice.

A trade is part of its portfolio's history, so it is taken back as a split is (splits.py): in one
transaction, under the portfolio's lock (trades.py, "Concurrency"), the trades and splits are read
again, the whole history is replayed without the trade, and the deletion is refused, nothing
changed, when a later trade would not hold without it: a sell of shares only that buy gave
(INSUFFICIENT_SHARES), a paper portfolio's buy that only that deposit paid for
(INSUFFICIENT_CASH); the refusal names the trade that would break. Else the row goes and the book
the replay ends with is stored in the same transaction. Two deletes of one trade: the second
waits for the first's lock and finds the trade gone, a 404, as does the delete of another user's
trade (no one learns that a trade id exists).

Refused too: an order's fill (its order says FILLED with its trade; the order stays true).

A dividend the market paid a paper portfolio (dividends.py) can be deleted like any trade; its
payout stays noted, so the payer never pays that dividend again: deleted is deleted. A user who
wants it back records it by hand (a `dividend` trade of the symbol on the ex-date, which the payer
also counts as paid).

After the commit, the trade as it was goes out as a `trade_deleted` event, and the portfolio's new
value as `portfolio_value`, to its owner's sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from services.portfolio.book_states import StoredBook
from services.portfolio.domain import (
    Book,
    CashPolicy,
    Event,
    Trade,
    order_key,
    present_money,
    present_quantity,
)
from services.portfolio.events import EventHub
from services.portfolio.prices import Prices
from services.portfolio.records import RecordedSplit, RecordedTrade
from services.portfolio.repository import PortfolioRepository, SplitRepository, TradeRepository
from services.portfolio.splits import announce_value
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import FailedPrecondition, NotFound

TRADE_NOT_FOUND = "TRADE_NOT_FOUND"


def trade_not_found(trade_id: str) -> NotFound:
    """The same answer for a trade that never existed, another user's, and one just deleted."""
    return NotFound(f"trade {trade_id[:64]!r} not found", reason=TRADE_NOT_FOUND)


class OrderFill(FailedPrecondition):
    """The trade is an order's fill: the order records it as filled."""

    reason = "TRADE_IS_ORDER_FILL"


def described(trade: Trade) -> str:
    """How a refusal names a trade: "the sell of 10 AAPL on 2026-03-02", "the deposit of
    1000.00 on 2026-03-02", "the KO dividend of 12.40 on 2026-03-02"."""
    day = trade.day.isoformat()
    if trade.side.trades_shares:
        return (
            f"the {trade.side.value} of {present_quantity(trade.quantity)} {trade.symbol} on {day}"
        )
    if trade.symbol:
        return f"the {trade.symbol} {trade.side.value} of {present_money(trade.amount)} on {day}"
    return f"the {trade.side.value} of {present_money(trade.amount)} on {day}"


def replay_without(
    policy: CashPolicy, gone: Trade, trades: Sequence[Trade], splits: Sequence[RecordedSplit]
) -> Book:
    """The book of the history without `gone`; when a trade after it breaks a rule, the rule's
    refusal (its status and reason) with a message naming that trade, and its id as `tradeId`."""
    book = Book(policy)
    events: list[Event] = [*(t for t in trades if t.id != gone.id), *(r.split for r in splits)]
    for event in sorted(events, key=order_key):
        try:
            book.record(event)
        except FailedPrecondition as refused:
            if not isinstance(event, Trade):
                raise
            raise FailedPrecondition(
                f"deleting {described(gone)} would leave {described(event)} impossible:"
                f" {refused.message}",
                reason=refused.reason,
                data={**refused.data, "tradeId": event.id},
            ) from None
    return book


class TradeDeletion:
    def __init__(
        self,
        db: Database,
        prices: Prices,
        hub: EventHub,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._db = db
        self._prices = prices
        self._hub = hub
        self._clock = clock

    async def delete(self, user_id: str, trade_id: str) -> RecordedTrade:
        """Take the user's trade back; the trade as it was. NotFound for another user's (or
        none), refused with nothing changed when the history would not hold without it."""
        trade_id = trade_id.strip()
        async with self._db.transaction() as session:
            trades = TradeRepository(session)
            portfolios = PortfolioRepository(session)
            portfolio_id = await trades.portfolio_of(trade_id, user_id)
            if portfolio_id is None:
                raise trade_not_found(trade_id)
            portfolio = await portfolios.lock(portfolio_id, user_id)
            if portfolio is None:  # deleted with its trades since the read above
                raise trade_not_found(trade_id)
            # Read again under the lock: a delete of the same trade that held it is committed.
            history = await trades.of(portfolio_id)
            gone = next((r for r in history if r.trade.id == trade_id), None)
            if gone is None:
                raise trade_not_found(trade_id)
            if gone.order_id:
                raise OrderFill(
                    f"{described(gone.trade)} is the fill of order {gone.order_id}, which says it"
                    " filled: an order's fill cannot be deleted"
                )
            every = [r.trade for r in history]
            splits = await SplitRepository(session).of(portfolio_id)
            book = replay_without(portfolio.kind.policy, gone.trade, every, splits)
            await trades.remove(portfolio_id, trade_id)
            last = max((t.sequence for t in every if t.id != trade_id), default=0)
            await portfolios.save_book(portfolio_id, StoredBook(book.state(), last))
        await self._hub.trade_deleted(user_id, gone)
        await announce_value(self._prices, self._hub, portfolio, book, self._clock())
        return gone


__all__ = ["TRADE_NOT_FOUND", "OrderFill", "TradeDeletion", "replay_without", "trade_not_found"]
