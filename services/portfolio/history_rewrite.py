"""A portfolio's history rewritten in place: a trade deleted (trade_deletion.py) or edited
(trade_edits.py). Both hold the portfolio's lock, read its trades and splits again, replay the
whole history with the change, refuse it (nothing changed) naming the trade that would not hold,
and otherwise store what the replay ends with, in one transaction.

The market-paid dividends after the change are recomputed first: the payer (dividends.py) paid
each on the shares held at its ex-date, and a buy before it taken back or resized changes those
shares; left at its old figure the dividend would overstate income. Each is recomputed by the
payer's own two functions (`held_at_ex_date`, `payout`), in ex-date order over the history as
rewritten so far; one on no shares goes (its payout stays noted: it is not paid again). The
replay then checks the history with the new amounts (a paper buy paid by a dividend that shrank
is refused as any other). A dividend the user recorded, or edited (dividends.make_users), is the
user's figure: never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.book_states import StoredBook
from services.portfolio.dividends import held_at_ex_date, market_paid, payout
from services.portfolio.domain import (
    Book,
    CashPolicy,
    Event,
    Side,
    Split,
    Trade,
    order_key,
    present_money,
    present_quantity,
)
from services.portfolio.events import EventHub
from services.portfolio.prices import Prices
from services.portfolio.records import Portfolio, RecordedTrade
from services.portfolio.repository import PortfolioRepository, SplitRepository, TradeRepository
from services.portfolio.splits import announce_value
from services.runtime.errors import FailedPrecondition, NotFound

TRADE_NOT_FOUND = "TRADE_NOT_FOUND"


def trade_not_found(trade_id: str) -> NotFound:
    """The same answer for a trade that never existed, another user's, and one just deleted."""
    return NotFound(f"trade {trade_id[:64]!r} not found", reason=TRADE_NOT_FOUND)


class OrderFill(FailedPrecondition):
    """The trade is an order's fill: the order records it as filled."""

    reason = "TRADE_IS_ORDER_FILL"


def refuse_order_fill(recorded: RecordedTrade, verb: str) -> None:
    """OrderFill for an order's fill (`verb`: "deleted", "edited"): its order says what
    filled, and stays true."""
    if recorded.order_id:
        raise OrderFill(
            f"{described(recorded.trade)} is the fill of order {recorded.order_id}, which says"
            f" it filled: an order's fill cannot be {verb}"
        )


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


@dataclass(frozen=True)
class Change:
    """What is rewritten: the history's trades with the change made (`trades`), the earliest
    moment it touches (`since`: market-paid dividends of later ex-dates are recomputed), how a
    refusal names it ("deleting the buy of 10 AAPL on 2026-03-02"), and the edited trade's id
    (a refusal of that trade itself says so)."""

    trades: Sequence[Trade]
    since: datetime
    named: str
    edited_id: str = ""


@dataclass(frozen=True)
class Rewrite:
    """The history rewritten: the book its replay ends with, the market-paid dividends
    recomputed to another amount (as they are now) and those on no shares any more (as they
    were, removed)."""

    book: Book
    adjusted: list[Trade]
    dropped: list[Trade]


def rewritten(
    policy: CashPolicy,
    change: Change,
    splits: Sequence[Split],
    paid_by_market: set[str],
) -> Rewrite:
    """The history of `change` with its market-paid dividends recomputed and replayed; the
    refusal of the first trade that breaks a rule, naming it (its id as `tradeId`)."""
    history = sorted(change.trades, key=order_key)
    adjusted: list[Trade] = []
    dropped: list[Trade] = []
    kept: list[Trade] = []
    for trade in history:
        if (
            trade.side is Side.DIVIDEND
            and trade.id in paid_by_market
            and trade.executed_at > change.since
        ):
            # `kept` is the history before it as rewritten so far: the shares at the ex-date.
            held = held_at_ex_date(kept, splits, trade.symbol, trade.day, policy)
            if held <= 0:
                dropped.append(trade)
                continue
            fresh = payout(trade.symbol, trade.day, held, trade.price)
            if fresh.amount != trade.amount:
                trade = replace(trade, quantity=fresh.quantity, price=fresh.price)
                adjusted.append(trade)
        kept.append(trade)
    return Rewrite(_replayed(policy, change, kept, splits), adjusted, dropped)


def _replayed(
    policy: CashPolicy, change: Change, trades: Sequence[Trade], splits: Sequence[Split]
) -> Book:
    book = Book(policy)
    events: list[Event] = [*trades, *splits]
    for event in sorted(events, key=order_key):
        try:
            book.record(event)
        except FailedPrecondition as refused:
            if not isinstance(event, Trade):
                raise
            if event.id == change.edited_id:
                said = f"{change.named} would make it impossible: {refused.message}"
            else:
                said = (
                    f"{change.named} would leave {described(event)} impossible: {refused.message}"
                )
            raise FailedPrecondition(
                said, reason=refused.reason, data={**refused.data, "tradeId": event.id}
            ) from None
    return book


@dataclass(frozen=True)
class Locked:
    """A user's trade with its portfolio locked, and the portfolio's history as the lock holder
    reads it: its trades (ledger order), splits and market-paid dividends."""

    portfolio: Portfolio
    target: RecordedTrade
    history: list[RecordedTrade]
    splits: list[Split]
    paid_by_market: set[str]


async def lock_trade(session: AsyncSession, user_id: str, trade_id: str, verb: str) -> Locked:
    """The user's trade under its portfolio's lock; NotFound for another user's (or none),
    OrderFill for an order's fill (`verb`: "deleted", "edited")."""
    trades = TradeRepository(session)
    portfolio_id = await trades.portfolio_of(trade_id, user_id)
    if portfolio_id is None:
        raise trade_not_found(trade_id)
    portfolio = await PortfolioRepository(session).lock(portfolio_id, user_id)
    if portfolio is None:  # deleted with its trades since the read above
        raise trade_not_found(trade_id)
    # Read again under the lock: a delete of the same trade that held it is committed.
    history = await trades.of(portfolio_id)
    target = next((r for r in history if r.trade.id == trade_id), None)
    if target is None:
        raise trade_not_found(trade_id)
    refuse_order_fill(target, verb)
    splits = [r.split for r in await SplitRepository(session).of(portfolio_id)]
    paid = await market_paid(session, portfolio_id)
    return Locked(portfolio, target, history, splits, paid)


async def store(session: AsyncSession, locked: Locked, rewrite: Rewrite, last: int) -> None:
    """Write the recomputed dividends and the book (`last`: the highest sequence left)."""
    trades = TradeRepository(session)
    by_id = {r.trade.id: r for r in locked.history}
    for gone in rewrite.dropped:
        await trades.remove(locked.portfolio.id, gone.id)
    for dividend in rewrite.adjusted:
        await trades.rewrite(replace(by_id[dividend.id], trade=dividend))
    book = StoredBook(rewrite.book.state(), last)
    await PortfolioRepository(session).save_book(locked.portfolio.id, book)


def as_recorded(locked: Locked, trades: Sequence[Trade]) -> list[RecordedTrade]:
    """`trades` of the locked history with what else was recorded of them."""
    by_id = {r.trade.id: r for r in locked.history}
    return [replace(by_id[t.id], trade=t) for t in trades]


async def announce(
    hub: EventHub, prices: Prices, locked: Locked, rewrite: Rewrite, at: datetime
) -> None:
    """After the commit: the recomputed dividends (`trade_updated`, `trade_deleted` for one
    gone) and the portfolio's new value, to the owner's sockets."""
    user_id = locked.portfolio.user_id
    for adjusted in as_recorded(locked, rewrite.adjusted):
        await hub.trade_updated(user_id, adjusted)
    for dropped in as_recorded(locked, rewrite.dropped):
        await hub.trade_deleted(user_id, dropped)
    await announce_value(prices, hub, locked.portfolio, rewrite.book, at)
