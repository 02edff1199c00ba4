"""Trades and positions: recording a trade (one transaction that locks its portfolio, applies
the trade to its book and refuses what breaks a rule), listing trades, and positions at market
prices.

Concurrency, stated once: every write of a portfolio's trades first locks the portfolio row
(`SELECT ... FOR UPDATE` on PostgreSQL; on SQLite every writing transaction holds the database's
write lock from BEGIN IMMEDIATE), then reads its book, applies the new trades and inserts them
only if the book takes them. Two sells of one position therefore never both see the shares.

The book, stated once: each portfolio's book state (lots, bases, cash, running totals) is stored
beside it (portfolio_books) and rewritten in the transaction that records trades. A trade dated
at or after the last one the state includes is applied to the state alone, whatever the number
of trades before it; a back-dated one (before the last trade or split the state includes), or a
portfolio without a state yet (or of an older format), replays the whole history, its splits
with its trades (splits.py), and stores the state it ends with. Every path that writes a
portfolio's trades after its creation goes through `Trades.append`, but two: a trade is deleted
only by DeleteTrade (trade_deletion.py) and changed only by UpdateTrade (trade_edits.py), each of
which replays the history with its change under the same lock, recomputes the market-paid
dividends it moves (history_rewrite.py) and stores the state it ends with (deleting the
portfolio deletes its state with it). An import's splits (imports.py)
are recorded by `Trades.append` with its trades, after a replay of the whole history with both.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.book_states import StoredBook
from services.portfolio.books import current_book
from services.portfolio.currencies import CURRENCIES, TradeFx, Valuation, require_currency
from services.portfolio.domain import (
    Book,
    CostMethod,
    Event,
    Position,
    Side,
    Trade,
    normalize_symbol,
    order_key,
    parse_trade,
)
from services.portfolio.events import EventHub
from services.portfolio.exchange import Exchange
from services.portfolio.market_data import MarketData, check_listed
from services.portfolio.prices import Prices, converted
from services.portfolio.records import (
    Portfolio,
    RecordedSplit,
    RecordedTrade,
    portfolio_not_found,
    require_portfolio_id,
)
from services.portfolio.repository import (
    PortfolioRepository,
    SplitRepository,
    TradeFilter,
    TradeRepository,
    splits_by_portfolio,
)
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import (
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from services.runtime.pagination import Page

log = logging.getLogger(__name__)

# Called inside the transaction that records trades, with them, just before it commits: what
# must commit with them (an idempotency key's stored answer).
Settle = Callable[[AsyncSession, Sequence[RecordedTrade]], Awaitable[None]]

# Portfolios whose currency a process remembers (a hint only: see Trades.record), at most.
CURRENCIES_REMEMBERED = 10_000

# Field names as REST clients send them (lowerCamelCase).
_WIRE_NAMES = {"executed_at": "executedAt"}

# Applies `events` (the new trades, among the existing ones dated after the first of them when
# some are back-dated; in replay order) to a portfolio's book, the new ones given apart too;
# raises if a rule breaks.
BookCheck = Callable[[Book, Sequence[Event], Sequence[Trade]], None]


def wire_names(error: InvalidArgument) -> InvalidArgument:
    """The same error with the domain's field names as the wire spells them."""
    fields = [(_WIRE_NAMES.get(f, f), d) for f, d in error.fields]
    message = (
        "invalid trade: " + "; ".join(f"{f} {d}" for f, d in fields) if fields else error.message
    )
    return InvalidArgument(message, fields=fields, reason=error.reason)


def replay_check(book: Book, events: Sequence[Event], new: Sequence[Trade]) -> None:
    """Every event must apply in turn: a back-dated sell is checked against the shares held at
    its date, and every later trade against what it leaves."""
    for event in events:
        book.record(event)


class CurrencyChanged(Exception):
    """The portfolio's currency is not the one its new trades were converted into (it changed
    since this process last read it): nothing was checked or written."""

    def __init__(self, currency: str) -> None:
        super().__init__(currency)
        self.currency = currency


@dataclass(frozen=True)
class TradeDraft:
    """A trade as the caller sent it: wire strings, checked by `Trades.record`."""

    side: Side | None
    symbol: str
    quantity: str
    price: str = ""
    fees: str = ""
    executed_at: datetime | None = None
    notes: str = ""


@dataclass(frozen=True)
class Opened:
    """What CreatePosition answers: the position a buy is part of now, and its listing's
    currency, price in it and rate (None: the market cannot price it now)."""

    portfolio_id: str
    position: Position
    listed: Valuation | None


class Trades:
    def __init__(
        self,
        db: Database,
        market: MarketData,
        prices: Prices,
        hub: EventHub,
        *,
        clock: Callable[[], datetime] = utc_now,
        exchange: Exchange | None = None,
    ) -> None:
        self._db = db
        self._market = market
        self._prices = prices
        self._hub = hub
        self._clock = clock
        # Converts trades into their portfolio's currency (exchange.py); None: all in one.
        self._exchange = exchange
        # Each portfolio's currency as last read here: a trade is converted into it and
        # `append` checks it against the locked row, so a trade reads its portfolio only once.
        self._currencies: dict[str, str] = {}

    async def record(
        self, user_id: str, portfolio_id: str, draft: TradeDraft, *, settle: Settle | None = None
    ) -> RecordedTrade:
        """One trade, at the given price or, when none is given, at the market's current one."""
        portfolio_id = require_portfolio_id(portfolio_id)
        if draft.side is None:
            raise InvalidArgument.field(
                "side", "must be buy, sell, dividend, deposit or withdrawal"
            )
        now = self._clock()
        at_market = draft.side.trades_shares and not draft.price.strip()
        try:
            trade = parse_trade(
                draft.side,
                draft.symbol,
                draft.quantity,
                "1" if at_market else draft.price,  # checked first, priced below
                draft.fees,
                draft.executed_at or now,
                now=now,
                notes=draft.notes,
            )
        except InvalidArgument as problem:
            raise wire_names(problem) from None
        source = ""
        if at_market:
            quote = await self._market.quote(trade.symbol)
            trade, source = replace(trade, price=quote.price), quote.source
        elif trade.symbol:
            await self.check_symbol(trade.symbol)
        recorded = await self._convert_and_append(user_id, portfolio_id, trade, source, settle)
        await self._hub.trades_recorded(user_id, [recorded])
        return recorded

    async def record_fill(
        self,
        user_id: str,
        portfolio_id: str,
        trade: Trade,
        *,
        source: str,
        order_id: str,
        settle: Settle,
    ) -> RecordedTrade:
        """The trade an order's fill makes (priced by the tick), converted and appended as
        `record` does; the caller publishes it."""
        return await self._convert_and_append(
            user_id, portfolio_id, trade, source, settle, order_id=order_id
        )

    async def record_sized(
        self,
        user_id: str,
        portfolio_id: str,
        trade: Trade,
        *,
        source: str,
        size: Callable[[Trade], Trade],
        settle: Settle,
    ) -> RecordedTrade:
        """A buy of a sum rather than of shares (a savings plan's, plan_runner.py): `size` gets
        the trade priced in the portfolio's currency and gives it with its quantity; then it is
        appended as `record` appends (the same lock and checks). The caller publishes it."""
        return await self._convert_and_append(
            user_id, portfolio_id, trade, source, settle, size=size
        )

    async def _convert_and_append(
        self,
        user_id: str,
        portfolio_id: str,
        trade: Trade,
        source: str,
        settle: Settle | None,
        *,
        order_id: str = "",
        size: Callable[[Trade], Trade] | None = None,
    ) -> RecordedTrade:
        """`trade` converted into its portfolio's currency (and sized, given `size`) and
        appended. The currency this process remembers saves a transaction of its own; a stale
        one (the portfolio's currency changed, here or on another replica) costs a second try
        with the one the row holds."""
        if self._exchange is None:
            sized = size(trade) if size is not None else trade
            _, (recorded,) = await self.append(
                user_id, portfolio_id, [sized], source=source, order_id=order_id, settle=settle
            )
            return recorded
        currency = self._currencies.get(portfolio_id)
        if currency is None:
            currency = await self._exchange.portfolio_currency(user_id, portfolio_id)
        while True:
            converted, fx = await self._exchange.trade_in(trade, currency)
            if size is not None:
                converted = size(converted)  # the rate's local price and fees are per share
            try:
                _, (recorded,) = await self.append(
                    user_id,
                    portfolio_id,
                    [converted],
                    source=source,
                    order_id=order_id,
                    settle=settle,
                    conversions=[fx],
                    currency=currency,
                )
            except CurrencyChanged as changed:
                currency = changed.currency
                continue
            finally:
                if len(self._currencies) >= CURRENCIES_REMEMBERED:
                    self._currencies.clear()
            self._currencies[portfolio_id] = currency
            return recorded

    async def check_symbol(self, symbol: str) -> None:
        """NotFound for a symbol the market does not list. A market that cannot answer now
        (down, or out of calls) does not stop a trade whose price the caller gave."""
        await check_listed(self._market, symbol)

    async def check_tradable(self, symbol: str) -> None:
        """check_symbol, and that the listing's trading currency is one we convert (Alpha
        Vantage lists London stocks in GBX: an order on one would fail at every fill). A market
        that cannot say now leaves that to the fill."""
        await self.check_symbol(symbol)
        if self._exchange is None:
            return
        try:
            # A listing that names no currency is in the portfolio's: any we support, here.
            trading = await self._exchange.currency_of(symbol, CURRENCIES[0])
        except (Unavailable, ResourceExhausted) as problem:
            log.info("currency not checked", extra={"symbol": symbol, "why": problem.reason})
            return
        require_currency(trading, "symbol")

    async def append(
        self,
        user_id: str,
        portfolio_id: str,
        new: Sequence[Trade],
        *,
        source: str = "",
        order_id: str = "",
        check: BookCheck = replay_check,
        dry_run: bool = False,
        settle: Settle | None = None,
        conversions: Sequence[TradeFx | None] = (),
        currency: str | None = None,
        splits: Sequence[RecordedSplit] = (),
    ) -> tuple[Portfolio, list[RecordedTrade]]:
        """Record `new` after the portfolio's trades if `check` passes; all or nothing, and
        `settle` in the same transaction.

        `splits`, new splits of the portfolio, are recorded with `new`: the whole history is
        replayed then, and `check` is given every event, the recorded splits and trades among
        them, so that it can refuse a split whose symbol and day are taken and keep the cap
        (imports.py; the table's unique key stands behind the first).

        A dry run checks the same way and records nothing (its trades have no ids). With
        `currency` (the one `new` was converted into), a portfolio whose currency is another
        raises CurrencyChanged before anything is checked.
        """
        now = self._clock()
        transaction = self._db.reading() if dry_run else self._db.transaction()
        async with transaction as session:
            portfolios = PortfolioRepository(session)
            found = await portfolios.with_book(portfolio_id, user_id, lock=not dry_run)
            if found is None:
                raise portfolio_not_found(portfolio_id)
            portfolio, stored = found
            if currency is not None and portfolio.base_currency != currency:
                raise CurrencyChanged(portfolio.base_currency)
            repository = TradeRepository(session)
            existing: list[Trade] | None = None
            if stored is None:
                existing = [r.trade for r in await repository.of(portfolio_id)]
                last = max((t.sequence for t in existing), default=0)
            else:
                last = stored.last_sequence
            numbered = [
                replace(t, sequence=last + 1 + i, id="" if dry_run else str(uuid.uuid4()))
                for i, t in enumerate(new)
            ]
            book = Book.resume(stored.state) if stored is not None else None
            if book is None or splits or not all(book.takes_in_order(t) for t in numbered):
                if existing is None:
                    existing = [r.trade for r in await repository.of(portfolio_id)]
                # The splits come with the history they are part of (splits.py).
                recorded_splits = (await splits_by_portfolio(session, [portfolio_id]))[portfolio_id]
                book = Book(portfolio.kind.policy)
                events: list[Event] = [
                    *existing,
                    *recorded_splits,
                    *numbered,
                    *(r.split for r in splits),
                ]
            else:
                events = list(numbered)
            check(book, sorted(events, key=order_key), numbered)
            fxs = [*conversions, *[None] * (len(numbered) - len(conversions))]
            recorded = [
                RecordedTrade(portfolio_id, t, now, source, order_id, fx)
                for t, fx in zip(numbered, fxs, strict=True)
            ]
            if not dry_run:
                for split in splits:
                    await SplitRepository(session).add(split)
                saved = StoredBook(book.state(), last + len(numbered))
                await portfolios.save_book(portfolio_id, saved, recorded)
                if settle is not None:
                    await settle(session, recorded)
        return portfolio, recorded

    async def search(self, wanted: TradeFilter, page: Page) -> tuple[list[RecordedTrade], int]:
        if wanted.symbol:
            wanted = replace(wanted, symbol=normalize_symbol(wanted.symbol))
        if wanted.start and wanted.end and wanted.start > wanted.end:
            raise InvalidArgument.field("from", "must not be after to")
        async with self._db.reading() as session:
            if wanted.portfolio_id:
                found = await PortfolioRepository(session).get(wanted.portfolio_id, wanted.user_id)
                if found is None:
                    raise portfolio_not_found(wanted.portfolio_id)
            return await TradeRepository(session).page(wanted, offset=page.offset, limit=page.limit)

    async def positions(
        self,
        user_id: str,
        portfolio_id: str,
        *,
        method: CostMethod = CostMethod.FIFO,
        include_closed: bool = False,
    ) -> list[Position]:
        """Positions at the market's current prices (a symbol it cannot price now: its last
        trade price), weighted within the portfolio's total value, sorted by symbol."""
        found, _ = await self._listed_positions(user_id, portfolio_id, method, include_closed)
        return found

    async def _listed_positions(
        self, user_id: str, portfolio_id: str, method: CostMethod, include_closed: bool
    ) -> tuple[list[Position], dict[str, Valuation]]:
        """`positions`, and the listings they are valued at: one read of the market, so that a
        position's price is its local price at its rate (two reads of a ticking market gave
        a price that was not localPrice times fxRate)."""
        portfolio, book = await current_book(self._db, user_id, require_portfolio_id(portfolio_id))
        listed = await self._prices.listings(book.open_symbols(), portfolio.base_currency)
        found = book.positions(converted(listed), method=method, include_closed=include_closed)
        return found, listed

    async def positions_page(
        self,
        user_id: str,
        portfolio_id: str,
        page: Page,
        *,
        method: CostMethod = CostMethod.FIFO,
        include_closed: bool = False,
    ) -> tuple[list[Position], int, dict[str, Valuation]]:
        """One page of `positions`, how many there are in all, and their listings."""
        found, listed = await self._listed_positions(user_id, portfolio_id, method, include_closed)
        return found[page.offset : page.offset + page.limit], len(found), listed

    async def open_position(
        self,
        user_id: str,
        portfolio_id: str,
        draft: TradeDraft,
        *,
        settle: Callable[[AsyncSession, Opened], Awaitable[None]] | None = None,
    ) -> Opened:
        """A BUY by another name: records `draft` as CreateTrade does; gives the portfolio's id
        and the position it is part of now. The position is valued (at prices read before)
        inside the trade's transaction, so that `settle` commits with the trade, given it: a
        caller gone after the commit leaves an answer for its retry, never a second buy."""
        portfolio_id = require_portfolio_id(portfolio_id)
        try:
            symbol = normalize_symbol(draft.symbol)
        except InvalidArgument:
            symbol = ""  # record() refuses it, naming the field as CreateTrade does
        # Every holding priced, as ListPositions does: the position's weight is of them all.
        portfolio, before = await current_book(self._db, user_id, portfolio_id)
        held = {*before.open_symbols(), *([symbol] if symbol else [])}
        listed = await self._prices.listings(held, portfolio.base_currency)
        prices = converted(listed)
        answer: Opened | None = None

        async def value(session: AsyncSession, recorded: Sequence[RecordedTrade]) -> None:
            nonlocal answer
            found = await PortfolioRepository(session).with_book(portfolio_id, user_id, lock=False)
            assert found is not None and found[1] is not None  # the append just stored it
            book = Book.resume(found[1].state)
            held = book.positions(prices, include_closed=True)
            position = next(p for p in held if p.symbol == symbol)
            answer = Opened(portfolio_id, position, listed.get(symbol))
            if settle is not None:
                await settle(session, answer)

        await self.record(user_id, portfolio_id, replace(draft, side=Side.BUY), settle=value)
        assert answer is not None
        return answer

    async def position(self, user_id: str, portfolio_id: str, symbol: str) -> Position:
        for position in await self.positions(user_id, portfolio_id, include_closed=True):
            if position.symbol == symbol:
                return position
        raise NotFound(f"no position in {symbol}")
