"""Stock splits a portfolio records: listing, recording and taking one back.

A split is an event of the portfolio's history like a trade (book.py, "Splits"): replayed with
the trades, before those at its instant (the start of its day, UTC). Recording or deleting one
changes the history before trades already recorded, so it is done as a trade is (trades.py,
"Concurrency"): under the portfolio's lock, the whole history is replayed with the change, the
change is refused when a trade after it would break a rule (a sell of more shares than a reverse
split leaves), and the book state the replay ends with is stored with it. The portfolio's open
orders of the symbol are brought to their terms under the splits in the same transaction
(orders.py, "split_terms").
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.book_states import StoredBook
from services.portfolio.domain import (
    Book,
    CashPolicy,
    Event,
    Split,
    Trade,
    normalize_symbol,
    order_key,
)
from services.portfolio.events import EventHub
from services.portfolio.order_desk import Orders
from services.portfolio.orders import Order
from services.portfolio.prices import Prices
from services.portfolio.records import (
    Portfolio,
    RecordedSplit,
    SplitEffect,
    check_room,
    portfolio_not_found,
    require_portfolio_id,
)
from services.portfolio.repository import PortfolioRepository, SplitRepository, TradeRepository
from services.portfolio.trading import EARLIEST
from services.portfolio.wire_numbers import PRICE_PLACES, ZERO, parse_decimal
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)

log = logging.getLogger(__name__)

# Splits one portfolio keeps: a stock splits a few times a decade.
MAX_SPLITS = 500
# Shares on either side of a split: the service's own bound on a ratio's terms.
MAX_TERM = 1_000_000


@dataclass(frozen=True)
class SplitDraft:
    """A split as the caller sent it: wire values, checked by `Splits.create`."""

    symbol: str
    date: str
    numerator: int
    denominator: int
    price: str = ""


def parse_split(draft: SplitDraft, *, today: date) -> Split:
    """The split a draft states; InvalidArgument naming the field it gets wrong."""
    symbol = normalize_symbol(draft.symbol)
    try:
        day = date.fromisoformat(draft.date.strip())
    except ValueError:
        raise InvalidArgument.field("date", "must be a day as YYYY-MM-DD") from None
    if day > today:
        raise InvalidArgument.field("date", "must be today or before (record a split once done)")
    if day < EARLIEST.date():
        raise InvalidArgument.field("date", f"must be {EARLIEST.date().isoformat()} or later")
    for name, term in (("numerator", draft.numerator), ("denominator", draft.denominator)):
        if not 1 <= term <= MAX_TERM:
            raise InvalidArgument.field(name, f"must be a whole number from 1 to {MAX_TERM}")
    if draft.numerator == draft.denominator:
        raise InvalidArgument.field("denominator", "must differ from numerator (no split)")
    price = None
    if draft.price.strip():
        price = parse_decimal("price", draft.price, places=PRICE_PLACES)
        if price <= 0:
            raise InvalidArgument.field("price", "must be greater than zero")
    return Split(
        symbol,
        Decimal(draft.numerator),
        datetime(day.year, day.month, day.day, tzinfo=UTC),
        price=price,
        of=draft.denominator,
    )


class SplitConflict(FailedPrecondition):
    """A change of splits that would leave a recorded trade impossible."""

    reason = "SPLIT_CONFLICT"


def replay_with_splits(
    policy: CashPolicy, trades: Sequence[Trade], splits: Sequence[RecordedSplit]
) -> tuple[Book, list[SplitEffect]]:
    """The book of `trades` and `splits` replayed in order, and each split's effect; a trade the
    splits make impossible raises SplitConflict naming it."""
    book = Book(policy)
    effects: list[SplitEffect] = []
    by_event = {id(r.split): r for r in splits}
    events: list[Event] = [*trades, *(r.split for r in splits)]
    for event in sorted(events, key=order_key):
        if isinstance(event, Split):
            effects.append(apply_split(book, by_event[id(event)]))
            continue
        try:
            book.record(event)
        except DomainError as refused:
            raise SplitConflict(
                f"the splits would leave the {event.side.value} of {event.quantity.normalize():f}"
                f" {event.symbol} on {event.day.isoformat()} impossible: {refused.message}"
            ) from None
    return book, effects


def apply_split(book: Book, recorded: RecordedSplit) -> SplitEffect:
    """Apply a split to `book` (in its place in the history) and say what it did."""
    split = recorded.split
    before, paid = book.quantity(split.symbol), len(book.cash_in_lieu)
    book.record(split)
    lieu = book.cash_in_lieu[paid:]
    return SplitEffect(
        recorded, before, book.quantity(split.symbol), sum((c.proceeds for c in lieu), ZERO)
    )


async def announce_value(
    prices: Prices, hub: EventHub, portfolio: Portfolio, book: Book, at: datetime
) -> None:
    """The portfolio's value with its changed history (a split, a trade deleted: its book was
    replayed), to its owner's sockets at once (the revaluer's next round is up to a minute
    away); a market that cannot price it now leaves that to the round."""
    try:
        current = await prices.current(book.open_symbols(), portfolio.base_currency)
    except DomainError as problem:
        log.info("book not valued", extra={"portfolioId": portfolio.id, "why": problem.reason})
        return
    await hub.portfolio_valued(portfolio.user_id, portfolio.id, book.totals(current), at)


class Splits:
    def __init__(
        self,
        db: Database,
        prices: Prices,
        hub: EventHub,
        *,
        orders: Orders | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """`orders`: the open orders a split adjusts (none without it: tools, tests)."""
        self._db = db
        self._prices = prices
        self._hub = hub
        self._orders = orders
        self._clock = clock

    async def find(self, user_id: str, portfolio_id: str, symbol: str = "") -> list[SplitEffect]:
        """The portfolio's splits by date (only `symbol`'s, given one), with their effects."""
        portfolio_id = require_portfolio_id(portfolio_id)
        wanted = normalize_symbol(symbol) if symbol.strip() else ""
        async with self._db.reading() as session:
            portfolio = await PortfolioRepository(session).get(portfolio_id, user_id)
            if portfolio is None:
                raise portfolio_not_found(portfolio_id)
            trades = [r.trade for r in await TradeRepository(session).of(portfolio_id)]
            splits = await SplitRepository(session).of(portfolio_id)
        _, effects = replay_with_splits(portfolio.kind.policy, trades, splits)
        return [e for e in effects if not wanted or e.recorded.split.symbol == wanted]

    async def create(
        self,
        user_id: str,
        portfolio_id: str,
        draft: SplitDraft,
        *,
        settle: Callable[[AsyncSession, SplitEffect], Awaitable[None]] | None = None,
    ) -> SplitEffect:
        """Record a split; refused (nothing written) when one of the symbol is recorded for
        that day, or when a later trade would not hold with it."""
        portfolio_id = require_portfolio_id(portfolio_id)
        now = self._clock()
        split = parse_split(draft, today=now.astimezone(UTC).date())
        recorded = RecordedSplit(str(uuid.uuid4()), portfolio_id, split, now)
        async with self._db.transaction() as session:
            portfolio, trades, splits = await self._locked(session, user_id, portfolio_id)
            check_room(len(splits), MAX_SPLITS, "splits in a portfolio", reason="TOO_MANY_SPLITS")
            for other in splits:
                if (other.split.symbol, other.split.day) == (split.symbol, split.day):
                    raise AlreadyExists(
                        f"a split of {split.symbol} on {split.day.isoformat()} is recorded"
                        " already; delete it first to change it",
                        reason="SPLIT_EXISTS",
                    )
            book, effects = replay_with_splits(portfolio.kind.policy, trades, [*splits, recorded])
            await SplitRepository(session).add(recorded)
            await self._store(session, portfolio_id, book, trades)
            changed = await self._follow(session, portfolio_id, split.symbol, [*splits, recorded])
            effect = next(e for e in effects if e.recorded is recorded)
            if settle is not None:
                await settle(session, effect)
        await self._announce(portfolio, book, changed)
        return effect

    async def delete(self, user_id: str, portfolio_id: str, split_id: str) -> None:
        """Take a split back; refused when a later trade needs it (a sell of shares only the
        split made)."""
        portfolio_id = require_portfolio_id(portfolio_id)
        async with self._db.transaction() as session:
            portfolio, trades, splits = await self._locked(session, user_id, portfolio_id)
            gone = [s for s in splits if s.id == split_id.strip()]
            if not gone:
                raise NotFound(f"split {split_id.strip()[:64]!r} not found", reason="NOT_FOUND")
            kept = [s for s in splits if s not in gone]
            book, _ = replay_with_splits(portfolio.kind.policy, trades, kept)
            await SplitRepository(session).remove(portfolio_id, split_id.strip())
            await self._store(session, portfolio_id, book, trades)
            changed = await self._follow(session, portfolio_id, gone[0].split.symbol, kept)
        await self._announce(portfolio, book, changed)

    async def _follow(
        self,
        session: AsyncSession,
        portfolio_id: str,
        symbol: str,
        splits: Sequence[RecordedSplit],
    ) -> list[Order]:
        if self._orders is None:
            return []
        return await self._orders.follow_splits(
            session, portfolio_id, symbol, [r.split for r in splits]
        )

    async def _announce(self, portfolio: Portfolio, book: Book, changed: Sequence[Order]) -> None:
        """The orders the change adjusted, and the portfolio's new value."""
        if self._orders is not None:
            await self._orders.announce(changed)
        await announce_value(self._prices, self._hub, portfolio, book, self._clock())

    async def _locked(
        self, session: AsyncSession, user_id: str, portfolio_id: str
    ) -> tuple[Portfolio, list[Trade], list[RecordedSplit]]:
        """The user's portfolio, locked as a trade's writer locks it, with its history."""
        portfolios = PortfolioRepository(session)
        portfolio = await portfolios.lock(portfolio_id, user_id)
        if portfolio is None:
            raise portfolio_not_found(portfolio_id)
        trades = [r.trade for r in await TradeRepository(session).of(portfolio_id)]
        return portfolio, trades, await SplitRepository(session).of(portfolio_id)

    @staticmethod
    async def _store(
        session: AsyncSession, portfolio_id: str, book: Book, trades: Sequence[Trade]
    ) -> None:
        last = max((t.sequence for t in trades), default=0)
        await PortfolioRepository(session).save_book(portfolio_id, StoredBook(book.state(), last))


__all__ = [
    "MAX_SPLITS",
    "SplitConflict",
    "SplitDraft",
    "SplitEffect",
    "Splits",
    "announce_value",
    "apply_split",
    "parse_split",
    "replay_with_splits",
]
