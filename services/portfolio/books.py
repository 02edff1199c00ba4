"""Each portfolio's book: the stored one (trades.py keeps it with every write), else a replay of
its trades and splits.

A replay reads two tables, and they must agree: on PostgreSQL a plain read transaction (READ
COMMITTED) sees each statement's own moment, so a back-dated buy and a split committing between
the read of the trades and the read of the splits were replayed as old trades under a new split
(a wrong book, or a refused replay of a history that is fine). A replay therefore reads in one
snapshot (`Database.snapshot`), or in a transaction that holds the portfolio's lock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.domain import Book, Split, Trade
from services.portfolio.records import Portfolio, RecordedTrade, portfolio_not_found
from services.portfolio.repository import PortfolioRepository, TradeRepository, splits_by_portfolio
from services.runtime.db import Database


async def replayed(session: AsyncSession, found: Sequence[Portfolio]) -> dict[str, Book]:
    """Each portfolio's book replayed from its trades and splits as `session` reads them (one
    snapshot, or under the portfolios' locks: see the module's docstring)."""
    if not found:
        return {}
    ids = [p.id for p in found]
    trades = await TradeRepository(session).of_many(ids)
    splits = await splits_by_portfolio(session, ids)
    return {
        p.id: Book.replay(
            [r.trade for r in trades[p.id]], splits=splits[p.id], policy=p.kind.policy
        )
        for p in found
    }


async def replayed_now(db: Database, found: Sequence[Portfolio]) -> dict[str, Book]:
    """`replayed`, read in a snapshot of its own."""
    if not found:
        return {}
    async with db.snapshot() as session:
        return await replayed(session, found)


async def stored_books(session: AsyncSession, found: Sequence[Portfolio]) -> dict[str, Book]:
    """The books stored for those portfolios that have one (of the current format)."""
    stored = await PortfolioRepository(session).books([p.id for p in found])
    return {portfolio_id: Book.resume(book.state) for portfolio_id, book in stored.items()}


async def current_book(db: Database, user_id: str, portfolio_id: str) -> tuple[Portfolio, Book]:
    """The user's portfolio and its book as stored (replayed when it has none); NotFound for
    another user's portfolio, as for one that never existed."""
    async with db.reading() as session:
        found = await PortfolioRepository(session).with_book(portfolio_id, user_id, lock=False)
    if found is None:
        raise portfolio_not_found(portfolio_id)
    portfolio, stored = found
    if stored is not None:
        return portfolio, Book.resume(stored.state)
    return portfolio, (await replayed_now(db, [portfolio]))[portfolio_id]


@dataclass(frozen=True)
class History:
    """A portfolio's whole history as one moment saw it: its trades (ledger order) and splits."""

    portfolio: Portfolio
    recorded: list[RecordedTrade]
    splits: list[Split]

    @property
    def trades(self) -> list[Trade]:
        return [r.trade for r in self.recorded]


async def history_of(db: Database, user_id: str, portfolio_id: str) -> History:
    """The user's portfolio with its trades and splits, read in one snapshot (the reports
    replay them); NotFound for another user's portfolio, as for one that never existed."""
    async with db.snapshot() as session:
        portfolio = await PortfolioRepository(session).get(portfolio_id, user_id)
        if portfolio is None:
            raise portfolio_not_found(portfolio_id)
        recorded = await TradeRepository(session).of(portfolio_id)
        splits = (await splits_by_portfolio(session, [portfolio_id]))[portfolio_id]
    return History(portfolio, recorded, splits)
