"""Correcting a trade recorded with a wrong figure (UpdateTrade): its quantity, price, fees, time
or notes, only those given.

Its side, symbol and portfolio stay: a trade of another kind is another trade, so a request
naming another one is refused, saying to delete the trade and record it anew. The new values are
checked as CreateTrade checks them (`parse_trade`), price and fees in the trade's own currency
(as it shows them); a trade whose day is unchanged keeps its rate, one moved to another day takes
that day's (exchange.py), as a trade recorded then would.

As a deletion is (trade_deletion.py), an edit is a rewrite of the history (history_rewrite.py):
in one transaction under the portfolio's lock the history is replayed with the trade as edited,
and the edit is refused, nothing changed, when the trade itself would not hold (a sell raised
past what is held then) or a later one would not (a sell of shares a lowered buy no longer
gives), naming it; the market-paid dividends of ex-dates after the trade (its old time or its
new one, whichever is first) are recomputed; the book the replay ends with is stored. An
order's fill is refused (its order says what filled); another user's trade is a 404.

A dividend the market paid, edited in its quantity, price or time, becomes the user's figure
(a broker's statement says what was really paid, tax withheld or not): it is never recomputed
again, and its payout stays noted so it is not paid twice. Fees and notes are the user's
additions to the payer's figure and leave it the payer's.

The new figures are worked out before the lock (a rate of another day may need the market, and
on SQLite a write to store it: not while holding the database's write lock), from the trade as
read then; under the lock the trade is read again, and if it changed meanwhile (another edit
committed) the work is done again from it, so that two edits of one trade both land, whichever
commits first, and the same edit twice leaves the same trade.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, replace
from datetime import datetime

from services.portfolio.currencies import TradeFx
from services.portfolio.dividends import make_users
from services.portfolio.domain import Side, Trade, normalize_symbol, parse_trade
from services.portfolio.events import EventHub
from services.portfolio.exchange import Exchange, at_rate
from services.portfolio.history_rewrite import (
    Change,
    announce,
    as_recorded,
    described,
    lock_trade,
    refuse_order_fill,
    rewritten,
    store,
    trade_not_found,
)
from services.portfolio.prices import Prices
from services.portfolio.records import RecordedTrade
from services.portfolio.repository import PortfolioRepository, TradeRepository
from services.portfolio.trades import wire_names
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import Conflict, InvalidArgument

# Edits of one trade that commit while this one works out its figures, before it gives up (each
# such edit is a user's click; more than a few at once is a script, and it may retry).
ATTEMPTS = 5
RECORD_ANEW = "cannot be changed: delete the trade and record it anew"


@dataclass(frozen=True)
class TradeChanges:
    """What an edit gives; None leaves a field as it is. `side`, `symbol` and `portfolio_id`
    are only compared with the trade's (another value is refused)."""

    quantity: str | None = None
    price: str | None = None
    fees: str | None = None
    executed_at: datetime | None = None
    notes: str | None = None
    side: Side | None = None
    side_given: bool = False
    symbol: str | None = None
    portfolio_id: str | None = None


@dataclass(frozen=True)
class Edited:
    """The trade as it is now, and the market-paid dividends the edit recomputed: to another
    amount (as they are now), and to nothing (removed, as they were)."""

    trade: RecordedTrade
    adjusted: list[RecordedTrade]
    dropped: list[RecordedTrade]


def _same_kind(base: RecordedTrade, changes: TradeChanges) -> None:
    """Refuse a change of side, symbol or portfolio, naming every field that asks for one."""
    trade = base.trade
    asked: list[tuple[str, str]] = []
    if changes.side_given and changes.side is not trade.side:
        asked.append(("side", RECORD_ANEW))
    if changes.symbol is not None and _symbol(changes.symbol) != trade.symbol:
        asked.append(("symbol", RECORD_ANEW))
    if changes.portfolio_id is not None and changes.portfolio_id.strip() != base.portfolio_id:
        asked.append(("portfolioId", RECORD_ANEW))
    if asked:
        said = "; ".join(f"{name} {why}" for name, why in asked)
        raise InvalidArgument(
            f"a trade's side, symbol and portfolio stay as recorded: {said}", fields=asked
        )


def _symbol(raw: str) -> str | None:
    """A symbol as the trade would hold it ("" for none); None for one no trade holds."""
    try:
        return normalize_symbol(raw) if raw.strip() else ""
    except InvalidArgument:
        return None


def _given(base: RecordedTrade, changes: TradeChanges, now: datetime) -> Trade:
    """The trade as edited, priced in its own currency, checked as CreateTrade checks a new one
    (its fields left as they are go through the same checks)."""
    trade = base.trade
    price, fees = (
        (base.fx.local_price, base.fx.local_fees) if base.fx else (trade.price, trade.fees)
    )
    try:
        edited = parse_trade(
            trade.side,
            trade.symbol,
            format(trade.quantity, "f") if changes.quantity is None else changes.quantity,
            format(price, "f") if changes.price is None else changes.price,
            format(fees, "f") if changes.fees is None else changes.fees,
            trade.executed_at if changes.executed_at is None else changes.executed_at,
            now=now,
            notes=trade.notes if changes.notes is None else changes.notes,
        )
    except InvalidArgument as problem:
        raise wire_names(problem) from None
    return replace(edited, sequence=trade.sequence, id=trade.id)


@dataclass(frozen=True, eq=False)
class TradeEdits:
    db: Database
    prices: Prices
    hub: EventHub
    exchange: Exchange | None = None
    _: KW_ONLY
    clock: Callable[[], datetime] = utc_now

    async def edit(self, user_id: str, trade_id: str, changes: TradeChanges) -> Edited:
        """The user's trade with `changes`. NotFound for another user's (or none); refused with
        nothing changed for a change of kind, a bad value, or a history it would break."""
        trade_id = trade_id.strip()
        for _ in range(ATTEMPTS):
            base, currency = await self._read(user_id, trade_id)
            refuse_order_fill(base, "edited")  # before any rate is asked for
            _same_kind(base, changes)
            edited = await self._priced(base, _given(base, changes, self.clock()), currency)
            done = await self._write(user_id, base, currency, edited, changes)
            if done is not None:
                return done
        raise Conflict(
            f"the trade {trade_id[:64]!r} kept changing while this edit was made; try again",
            reason="TRADE_CHANGED",
        )

    async def _read(self, user_id: str, trade_id: str) -> tuple[RecordedTrade, str]:
        """The user's trade and its portfolio's currency, as they are now."""
        async with self.db.reading() as session:
            found = await TradeRepository(session).find(trade_id, user_id)
            portfolio = None
            if found is not None:
                portfolio = await PortfolioRepository(session).get(found.portfolio_id, user_id)
        if found is None or portfolio is None:
            raise trade_not_found(trade_id)
        return found, portfolio.base_currency

    async def _priced(self, base: RecordedTrade, given: Trade, currency: str) -> RecordedTrade:
        """`given` in the portfolio's currency: at the trade's own rate on its own day, at the
        new day's rate (as a trade recorded that day) on another. A trade recorded before
        currencies is in the portfolio's already."""
        fx = base.fx
        price_source = base.price_source
        if fx is not None and given.price != fx.local_price:
            price_source = ""  # the caller gave the price: no market priced it
        elif fx is None and given.price != base.trade.price:
            price_source = ""
        if fx is None:
            return replace(base, trade=given, price_source=price_source)
        if given.day == base.trade.day or self.exchange is None:
            kept = TradeFx(fx.currency, fx.rate, given.price, given.fees)
            return replace(base, trade=at_rate(given, kept), fx=kept, price_source=price_source)
        converted, moved = await self.exchange.trade_in(given, currency, cash_in=fx.currency)
        return replace(base, trade=converted, fx=moved, price_source=price_source)

    async def _write(
        self,
        user_id: str,
        base: RecordedTrade,
        currency: str,
        edited: RecordedTrade,
        changes: TradeChanges,
    ) -> Edited | None:
        """Rewrite the history with `edited`, or None when the trade (or its portfolio's
        currency) is no longer what `edited` was worked out from."""
        trade_id = base.trade.id
        async with self.db.transaction() as session:
            locked = await lock_trade(session, user_id, trade_id, "edited")
            if locked.target != base or locked.portfolio.base_currency != currency:
                return None
            old, new = base.trade, edited.trade
            paid_by_market = locked.paid_by_market
            if trade_id in paid_by_market and (
                (new.quantity, new.price, new.executed_at)
                != (old.quantity, old.price, old.executed_at)
            ):
                await make_users(session, locked.portfolio.id, trade_id)
                paid_by_market = paid_by_market - {trade_id}
            history = [new if r.trade.id == trade_id else r.trade for r in locked.history]
            change = Change(
                history,
                min(old.executed_at, new.executed_at),
                f"editing {described(old)} into {described(new)}",
                edited_id=trade_id,
            )
            rewrite = rewritten(locked.portfolio.kind.policy, change, locked.splits, paid_by_market)
            await TradeRepository(session).rewrite(edited)
            dropped = {t.id for t in rewrite.dropped}
            last = max((t.sequence for t in history if t.id not in dropped), default=0)
            await store(session, locked, rewrite, last)
        await self.hub.trade_updated(user_id, edited)
        await announce(self.hub, self.prices, locked, rewrite, self.clock())
        return Edited(
            edited, as_recorded(locked, rewrite.adjusted), as_recorded(locked, rewrite.dropped)
        )


__all__ = ["Edited", "TradeChanges", "TradeEdits"]
