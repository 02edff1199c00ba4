"""Portfolios: create, read, update and delete a user's own, each read valued at the market's
current prices. Another user's portfolio is as absent as one that never existed."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.books import current_book, replayed, replayed_now, stored_books
from services.portfolio.currencies import Valuation
from services.portfolio.domain import (
    ONE,
    QUANTITY_PLACES,
    ZERO,
    Book,
    Position,
    Side,
    Totals,
    Trade,
    new_trade,
    parse_decimal,
)
from services.portfolio.events import EventHub
from services.portfolio.prices import Prices, converted
from services.portfolio.records import (
    Portfolio,
    PortfolioKind,
    RecordedTrade,
    check_room,
    clean_currency,
    clean_description,
    clean_name,
    portfolio_not_found,
    require_portfolio_id,
)
from services.portfolio.repository import (
    PortfolioRepository,
    TradeRepository,
)
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import FailedPrecondition, InvalidArgument
from services.runtime.pagination import Page


@dataclass(frozen=True)
class Valued:
    """A portfolio with its totals and open positions at current prices."""

    portfolio: Portfolio
    totals: Totals
    positions: list[Position]
    # Each open position's listing: its currency, price in it and today's rate.
    listed: Mapping[str, Valuation] = field(default_factory=dict)


@dataclass(frozen=True)
class PortfolioDraft:
    name: str
    description: str = ""
    base_currency: str = ""
    kind: PortfolioKind | None = None
    initial_cash: str = ""


@dataclass(frozen=True)
class PortfolioChanges:
    """Fields to change; None leaves one as it is."""

    name: str | None = None
    description: str | None = None
    base_currency: str | None = None


def _initial_deposit(raw: str, now: datetime) -> Trade | None:
    if not raw.strip():
        return None
    amount = parse_decimal("initialCash", raw, places=QUANTITY_PLACES)
    if amount < 0:
        raise InvalidArgument.field("initialCash", "must not be negative")
    if amount == 0:
        return None
    return new_trade(
        Side.DEPOSIT, "", amount, ONE, ZERO, now, now=now, sequence=1, id=str(uuid.uuid4())
    )


# A user's portfolios at most: each holds up to MAX_OPEN_ORDERS open orders the matcher
# checks at every tick, so without it one account could make every tick's work unbounded.
MAX_PORTFOLIOS = 100


@dataclass(frozen=True, eq=False)
class Portfolios:
    db: Database
    prices: Prices
    hub: EventHub
    _: KW_ONLY
    clock: Callable[[], datetime] = utc_now

    async def create(
        self,
        user_id: str,
        draft: PortfolioDraft,
        *,
        settle: Callable[[AsyncSession, Valued], Awaitable[None]] | None = None,
    ) -> Valued:
        """The new portfolio, valued; `settle` commits with it, given that answer (a new
        portfolio holds cash only: its value needs no price, so it is known before)."""
        now = self.clock()
        portfolio = Portfolio(
            id=str(uuid.uuid4()),
            user_id=user_id,
            name=clean_name(draft.name),
            description=clean_description(draft.description),
            base_currency=clean_currency(draft.base_currency),
            kind=draft.kind or PortfolioKind.TRACKING,
            created_at=now,
            updated_at=now,
        )
        deposit = _initial_deposit(draft.initial_cash, now)
        recorded = [RecordedTrade(portfolio.id, deposit, now)] if deposit else []
        book = Book.replay([r.trade for r in recorded], policy=portfolio.kind.policy)
        valued = (await self._value([(portfolio, book)]))[0]
        async with self.db.transaction() as session:
            repository = PortfolioRepository(session)
            check_room(
                await repository.count(user_id),
                MAX_PORTFOLIOS,
                "portfolios",
                reason="TOO_MANY_PORTFOLIOS",
                then="delete one first",
            )
            await repository.add(portfolio)
            await TradeRepository(session).add(recorded)
            if settle is not None:
                await settle(session, valued)
        await self.hub.trades_recorded(user_id, recorded)
        return valued

    async def get(self, user_id: str, portfolio_id: str) -> Valued:
        portfolio_id = require_portfolio_id(portfolio_id, "id")
        portfolio, book = await current_book(self.db, user_id, portfolio_id)
        return (await self._value([(portfolio, book)]))[0]

    async def page(self, user_id: str, page: Page) -> tuple[list[Valued], int]:
        async with self.db.reading() as session:
            found, total = await PortfolioRepository(session).page(
                user_id, offset=page.offset, limit=page.limit
            )
            books = await stored_books(session, found)
        books |= await replayed_now(self.db, [p for p in found if p.id not in books])
        valued = await self._value([(p, books[p.id]) for p in found])
        return valued, total

    async def update(self, user_id: str, portfolio_id: str, changes: PortfolioChanges) -> Valued:
        portfolio_id = require_portfolio_id(portfolio_id, "id")
        name = clean_name(changes.name) if changes.name is not None else None
        description = (
            clean_description(changes.description) if changes.description is not None else None
        )
        currency = clean_currency(changes.base_currency) if changes.base_currency else None
        async with self.db.transaction() as session:
            repository = PortfolioRepository(session)
            portfolio = await repository.lock(portfolio_id, user_id)
            if portfolio is None:
                raise portfolio_not_found(portfolio_id)
            changes_currency = currency is not None and currency != portfolio.base_currency
            # Its trades were converted at the rates into the old currency.
            if changes_currency and await TradeRepository(session).of(portfolio_id):
                raise FailedPrecondition(
                    "currency cannot change once the portfolio has trades",
                    reason="PORTFOLIO_HAS_TRADES",
                )
            portfolio.name = name if name is not None else portfolio.name
            if description is not None:
                portfolio.description = description
            portfolio.base_currency = currency or portfolio.base_currency
            portfolio.updated_at = self.clock()
            await repository.save(portfolio)
            # Under the portfolio's lock: a replay reads one history (books.py).
            books = await stored_books(session, [portfolio]) or await replayed(session, [portfolio])
        return (await self._value([(portfolio, books[portfolio.id])]))[0]

    async def delete(self, user_id: str, portfolio_id: str) -> None:
        """The portfolio and its trades."""
        portfolio_id = require_portfolio_id(portfolio_id, "id")
        async with self.db.transaction() as session:
            if not await PortfolioRepository(session).remove(portfolio_id, user_id):
                raise portfolio_not_found(portfolio_id)

    async def every(self, user_id: str) -> list[Valued]:
        """All of the user's portfolios, oldest first, each read as `get` reads it (its stored
        book, else a replay of its trades and splits: books.py) and all in one snapshot: the
        books are of one moment of the database, whatever commits while they are read. Four
        statements whatever the count (portfolios, books, then trades and splits of those
        without a stored book), and one quote per symbol held. Positions come without their
        lots: no figure needs them, and a stored book's are decoded only when listed."""
        async with self.db.snapshot() as session:
            found = await PortfolioRepository(session).every(user_id)
            books = await stored_books(session, found)
            books |= await replayed(session, [p for p in found if p.id not in books])
        return await self._value([(p, books[p.id]) for p in found], lots=False)

    async def _value(
        self, books: Sequence[tuple[Portfolio, Book]], *, lots: bool = True
    ) -> list[Valued]:
        """Price every open position of each book with one quote per symbol (without `lots`,
        the positions' lots are left out)."""
        held = {s for _, book in books for s in book.open_symbols()}
        by_currency = await self.prices.listings_in(held, {p.base_currency for p, _ in books})
        valued = []
        for portfolio, book in books:
            listed = by_currency[portfolio.base_currency]
            prices = converted(listed)
            positions = book.positions(prices, lots=lots)
            valued.append(Valued(portfolio, book.totals(prices), positions, listed))
        return valued
