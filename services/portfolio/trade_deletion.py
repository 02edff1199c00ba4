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
also counts as paid). The market-paid dividends of ex-dates after the deleted trade are
recomputed from the shares the history without it holds then (history_rewrite.py), in the same
transaction; the answer lists them.

After the commit, the trade as it was goes out as a `trade_deleted` event, each recomputed
dividend as `trade_updated` (or `trade_deleted`, one on no shares), and the portfolio's new value
as `portfolio_value`, to its owner's sockets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from datetime import datetime

from services.portfolio.events import EventHub
from services.portfolio.history_rewrite import (
    TRADE_NOT_FOUND,
    Change,
    OrderFill,
    announce,
    as_recorded,
    described,
    lock_trade,
    rewritten,
    store,
    trade_not_found,
)
from services.portfolio.prices import Prices
from services.portfolio.records import RecordedTrade
from services.portfolio.repository import TradeRepository
from services.runtime.clock import utc_now
from services.runtime.db import Database


@dataclass(frozen=True)
class Deleted:
    """The trade as it was, and the market-paid dividends its deletion recomputed: to another
    amount (as they are now), and to nothing (removed, as they were)."""

    trade: RecordedTrade
    adjusted: list[RecordedTrade]
    dropped: list[RecordedTrade]


@dataclass(frozen=True, eq=False)
class TradeDeletion:
    db: Database
    prices: Prices
    hub: EventHub
    _: KW_ONLY
    clock: Callable[[], datetime] = utc_now

    async def delete(self, user_id: str, trade_id: str) -> Deleted:
        """Take the user's trade back. NotFound for another user's (or none), refused with
        nothing changed when the history would not hold without it."""
        trade_id = trade_id.strip()
        async with self.db.transaction() as session:
            locked = await lock_trade(session, user_id, trade_id, "deleted")
            gone = locked.target.trade
            left = [r.trade for r in locked.history if r.trade.id != trade_id]
            change = Change(left, gone.executed_at, f"deleting {described(gone)}")
            rewrite = rewritten(
                locked.portfolio.kind.policy, change, locked.splits, locked.paid_by_market
            )
            await TradeRepository(session).remove(locked.portfolio.id, trade_id)
            dropped = {t.id for t in rewrite.dropped}
            last = max((t.sequence for t in left if t.id not in dropped), default=0)
            await store(session, locked, rewrite, last)
        await self.hub.trade_deleted(user_id, locked.target)
        await announce(self.hub, self.prices, locked, rewrite, self.clock())
        return Deleted(
            locked.target,
            as_recorded(locked, rewrite.adjusted),
            as_recorded(locked, rewrite.dropped),
        )


__all__ = ["TRADE_NOT_FOUND", "Deleted", "OrderFill", "TradeDeletion", "trade_not_found"]
