"""Loads and saves portfolios, trades and price history; hides SQLAlchemy from the rest."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from services.portfolio import book_states
from services.portfolio.book_states import StoredBook
from services.portfolio.currencies import TradeFx
from services.portfolio.domain import Side, Split, Trade
from services.portfolio.orm import portfolio_splits, portfolios, price_history, trades
from services.portfolio.records import (
    Portfolio,
    PortfolioKind,
    RecordedSplit,
    RecordedTrade,
    portfolio_not_found,
)
from services.runtime.db import Database
from services.runtime.errors import DomainError
from services.runtime.queries import fetch_page, one_writer_at_a_time

# SQLite allows at most 32766 bound parameters per statement; stay far below.
_IN_BATCH = 500


def _dialect_module(session: AsyncSession) -> Any:
    dialect = session.bind.dialect.name if session.bind else ""
    return postgresql if dialect == "postgresql" else sqlite


def _portfolio(row: Any) -> Portfolio:
    return Portfolio(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        description=row.description,
        base_currency=row.base_currency,
        kind=PortfolioKind(row.kind),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _recorded(row: Any) -> RecordedTrade:
    trade = Trade(
        side=Side(row.side),
        symbol=row.symbol,
        quantity=row.quantity,
        price=row.price,
        fees=row.fees,
        executed_at=row.executed_at,
        sequence=row.sequence,
        id=row.id,
        notes=row.notes,
    )
    fx = None
    if row.fx_rate is not None:
        fx = TradeFx(row.currency, row.fx_rate, row.local_price, row.local_fees)
    return RecordedTrade(
        row.portfolio_id, trade, row.created_at, row.price_source, row.order_id or "", fx
    )


_TRADE_COLUMNS = tuple(trades.c.keys())  # _trade_columns gives each of them


def _trade_columns(recorded: RecordedTrade) -> dict[str, Any]:
    trade = recorded.trade
    return {
        "id": trade.id,
        "portfolio_id": recorded.portfolio_id,
        "symbol": trade.symbol,
        "side": trade.side.value,
        "quantity": trade.quantity,
        "price": trade.price,
        "fees": trade.fees,
        "executed_at": trade.executed_at,
        "sequence": trade.sequence,
        "notes": trade.notes,
        "created_at": recorded.created_at,
        "price_source": recorded.price_source,
        "order_id": recorded.order_id,
        "currency": recorded.fx.currency if recorded.fx else "",
        "fx_rate": recorded.fx.rate if recorded.fx else None,
        "local_price": recorded.fx.local_price if recorded.fx else None,
        "local_fees": recorded.fx.local_fees if recorded.fx else None,
    }


# A portfolio as read everywhere but where its book is wanted (the book can be large).
_PORTFOLIO_COLUMNS = [c for c in portfolios.c if c.name != "book"]

# A trade's statements, built once with bound parameters: building a statement and its cache
# key on every call cost more CPU than running it (py-spy, the trades bench).
_WITH_BOOK = select(portfolios).where(
    portfolios.c.id == bindparam("portfolio_id"), portfolios.c.user_id == bindparam("user_id")
)
_WITH_BOOK_LOCKED = _WITH_BOOK.with_for_update()
_SAVE_BOOK = (
    update(portfolios)
    .where(portfolios.c.id == bindparam("portfolio_id"))
    .values(book=bindparam("new_book"))
)
# On PostgreSQL a single trade goes in with its book (a data-modifying WITH).
_SAVE_BOOK_AND_TRADE = _SAVE_BOOK.add_cte(
    insert(trades)
    .values({name: bindparam(f"trade_{name}") for name in _TRADE_COLUMNS})
    .cte("recorded")
)


class PortfolioRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, portfolio: Portfolio) -> None:
        await self._session.execute(
            insert(portfolios).values(
                id=portfolio.id,
                user_id=portfolio.user_id,
                name=portfolio.name,
                description=portfolio.description,
                base_currency=portfolio.base_currency,
                kind=portfolio.kind.value,
                created_at=portfolio.created_at,
                updated_at=portfolio.updated_at,
            )
        )

    async def count(self, user_id: str) -> int:
        """The user's portfolios, counted for the cap: the user's other creates that count
        wait until this transaction ends."""
        await one_writer_at_a_time(self._session, f"portfolios:{user_id}")
        query = select(func.count()).select_from(portfolios).where(portfolios.c.user_id == user_id)
        return int((await self._session.execute(query)).scalar_one())

    async def get(self, portfolio_id: str, user_id: str) -> Portfolio | None:
        """The user's portfolio; another user's is as absent as one that never existed."""
        row = (await self._session.execute(self._owned(portfolio_id, user_id))).first()
        return _portfolio(row) if row else None

    async def lock(self, portfolio_id: str, user_id: str) -> Portfolio | None:
        """The user's portfolio, locked until the transaction ends (SELECT ... FOR UPDATE on
        PostgreSQL; SQLite's writing transactions are serialized already): whoever records a
        trade reads the trades only after the previous writer committed."""
        query = self._owned(portfolio_id, user_id).with_for_update()
        row = (await self._session.execute(query)).first()
        return _portfolio(row) if row else None

    async def lock_paper(
        self, portfolio_id: str, user_id: str, not_paper: Callable[[], DomainError]
    ) -> Portfolio:
        """The user's paper portfolio, locked as `lock()` locks it: where orders and savings
        plans are placed (portfolio_not_found for none of theirs, `not_paper()` for a tracking
        one)."""
        portfolio = await self.lock(portfolio_id, user_id)
        if portfolio is None:
            raise portfolio_not_found(portfolio_id)
        if portfolio.kind is not PortfolioKind.PAPER:
            raise not_paper()
        return portfolio

    async def with_book(
        self, portfolio_id: str, user_id: str, *, lock: bool
    ) -> tuple[Portfolio, StoredBook | None] | None:
        """The user's portfolio and its stored book (None when it has none yet, or one of an
        older format), in one statement; with `lock`, the portfolio stays locked as `lock()`
        locks it, and the book read is the one the previous lock holder left."""
        query = _WITH_BOOK_LOCKED if lock else _WITH_BOOK
        found = await self._session.execute(
            query, {"portfolio_id": portfolio_id, "user_id": user_id}
        )
        row = found.first()
        if row is None:
            return None
        return _portfolio(row), None if row.book is None else book_states.decode(row.book)

    async def books(self, portfolio_ids: Sequence[str]) -> dict[str, StoredBook]:
        """The stored books of those portfolios that have one (of the current format)."""
        found: dict[str, StoredBook] = {}
        for portfolio_id, text in (await self.book_texts(portfolio_ids)).items():
            book = book_states.decode(text)
            if book is not None:
                found[portfolio_id] = book
        return found

    async def book_texts(self, portfolio_ids: Sequence[str]) -> dict[str, str]:
        """The stored books of those portfolios that have one, as stored (book_states' text,
        of whatever format), not decoded."""
        found: dict[str, str] = {}
        for start in range(0, len(portfolio_ids), _IN_BATCH):
            query = select(portfolios.c.id, portfolios.c.book).where(
                portfolios.c.id.in_(portfolio_ids[start : start + _IN_BATCH]),
                portfolios.c.book.is_not(None),
            )
            found.update((row.id, row.book) for row in (await self._session.execute(query)).all())
        return found

    async def save_book(
        self, portfolio_id: str, book: StoredBook, recorded: Sequence[RecordedTrade] = ()
    ) -> None:
        """Store the portfolio's book, replacing the one it had, and insert the trades
        `recorded` with it: on PostgreSQL, a single trade goes in the same statement (a data-
        modifying WITH), one round trip fewer per trade. (Only a single one: SQLAlchemy does not
        cache the compiled form of a multi-row VALUES, and compiling costs more than a round
        trip.)"""
        values = {"portfolio_id": portfolio_id, "new_book": book_states.encode(book)}
        dialect = self._session.bind.dialect.name if self._session.bind else ""
        if len(recorded) == 1 and dialect == "postgresql":
            row = _trade_columns(recorded[0])
            values.update((f"trade_{name}", row[name]) for name in _TRADE_COLUMNS)
            await self._session.execute(_SAVE_BOOK_AND_TRADE, values)
            return
        if recorded:
            await TradeRepository(self._session).add(recorded)
        await self._session.execute(_SAVE_BOOK, values)

    async def page(self, user_id: str, *, offset: int, limit: int) -> tuple[list[Portfolio], int]:
        query = (
            select(*_PORTFOLIO_COLUMNS)
            .where(portfolios.c.user_id == user_id)
            .order_by(portfolios.c.created_at, portfolios.c.id)
        )
        rows, total = await fetch_page(self._session, query, offset=offset, limit=limit)
        return [_portfolio(r) for r in rows], total

    async def every(self, user_id: str) -> list[Portfolio]:
        """All of the user's portfolios, oldest first (as `page` orders them)."""
        query = (
            select(*_PORTFOLIO_COLUMNS)
            .where(portfolios.c.user_id == user_id)
            .order_by(portfolios.c.created_at, portfolios.c.id)
        )
        return [_portfolio(r) for r in (await self._session.execute(query)).all()]

    async def after(self, portfolio_id: str, limit: int) -> list[Portfolio]:
        """Every user's portfolios in id order, `limit` at a time (the calculator's walk)."""
        query = (
            select(*_PORTFOLIO_COLUMNS)
            .where(portfolios.c.id > portfolio_id)
            .order_by(portfolios.c.id)
            .limit(limit)
        )
        return [_portfolio(r) for r in (await self._session.execute(query)).all()]

    async def save(self, portfolio: Portfolio) -> None:
        await self._session.execute(
            update(portfolios)
            .where(portfolios.c.id == portfolio.id)
            .values(
                name=portfolio.name,
                description=portfolio.description,
                base_currency=portfolio.base_currency,
                updated_at=portfolio.updated_at,
            )
        )

    async def remove(self, portfolio_id: str, user_id: str) -> bool:
        result = await self._session.execute(
            delete(portfolios).where(
                portfolios.c.id == portfolio_id, portfolios.c.user_id == user_id
            )
        )
        return bool(getattr(result, "rowcount", 0))

    @staticmethod
    def _owned(portfolio_id: str, user_id: str) -> Select[Any]:
        return select(*_PORTFOLIO_COLUMNS).where(
            portfolios.c.id == portfolio_id, portfolios.c.user_id == user_id
        )


@dataclass(frozen=True)
class TradeFilter:
    """Which of a user's trades to list; empty fields do not filter."""

    user_id: str
    portfolio_id: str = ""
    symbol: str = ""
    side: Side | None = None
    start: datetime | None = None  # executed at or after
    end: datetime | None = None  # executed at or before


async def portfolio_currency(db: Database, user_id: str, portfolio_id: str) -> str:
    """The user's portfolio's currency; 404 for another's or none."""
    async with db.reading() as session:
        portfolio = await PortfolioRepository(session).get(portfolio_id, user_id)
    if portfolio is None:
        raise portfolio_not_found(portfolio_id)
    return portfolio.base_currency


class TradeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def of(self, portfolio_id: str) -> list[RecordedTrade]:
        """A portfolio's trades in replay order."""
        return (await self.of_many([portfolio_id])).get(portfolio_id, [])

    async def of_many(self, portfolio_ids: Sequence[str]) -> dict[str, list[RecordedTrade]]:
        found: dict[str, list[RecordedTrade]] = {pid: [] for pid in portfolio_ids}
        for start in range(0, len(portfolio_ids), _IN_BATCH):
            batch = portfolio_ids[start : start + _IN_BATCH]
            query = (
                select(trades)
                .where(trades.c.portfolio_id.in_(batch))
                .order_by(trades.c.portfolio_id, trades.c.executed_at, trades.c.sequence)
            )
            for row in (await self._session.execute(query)).all():
                found[row.portfolio_id].append(_recorded(row))
        return found

    async def portfolio_of(self, trade_id: str, user_id: str) -> str | None:
        """The portfolio of the user's trade; None for another user's trade or none at all."""
        query = (
            select(trades.c.portfolio_id)
            .select_from(trades.join(portfolios, portfolios.c.id == trades.c.portfolio_id))
            .where(trades.c.id == trade_id, portfolios.c.user_id == user_id)
        )
        found: str | None = (await self._session.execute(query)).scalar_one_or_none()
        return found

    async def find(self, trade_id: str, user_id: str) -> RecordedTrade | None:
        """The user's trade; None for another user's trade or none at all."""
        query = (
            select(trades)
            .select_from(trades.join(portfolios, portfolios.c.id == trades.c.portfolio_id))
            .where(trades.c.id == trade_id, portfolios.c.user_id == user_id)
        )
        row = (await self._session.execute(query)).first()
        return _recorded(row) if row else None

    async def remove(self, portfolio_id: str, trade_id: str) -> None:
        """Delete one trade; only under its portfolio's lock (trade_deletion.py)."""
        await self._session.execute(
            delete(trades).where(trades.c.portfolio_id == portfolio_id, trades.c.id == trade_id)
        )

    async def rewrite(self, recorded: RecordedTrade) -> None:
        """Store a trade's new figures (its id, portfolio, sequence and order stay); only under
        its portfolio's lock (history_rewrite.py)."""
        row = _trade_columns(recorded)
        for kept in ("id", "portfolio_id", "sequence", "order_id", "created_at"):
            del row[kept]
        await self._session.execute(
            update(trades)
            .where(
                trades.c.portfolio_id == recorded.portfolio_id,
                trades.c.id == recorded.trade.id,
            )
            .values(row)
        )

    async def add(self, recorded: Iterable[RecordedTrade]) -> None:
        rows = [_trade_columns(r) for r in recorded]
        for start in range(0, len(rows), _IN_BATCH):
            await self._session.execute(insert(trades), rows[start : start + _IN_BATCH])

    async def page(
        self, wanted: TradeFilter, *, offset: int, limit: int
    ) -> tuple[list[RecordedTrade], int]:
        """Newest first."""
        conditions: list[Any] = [portfolios.c.user_id == wanted.user_id]
        if wanted.portfolio_id:
            conditions.append(trades.c.portfolio_id == wanted.portfolio_id)
        if wanted.symbol:
            conditions.append(trades.c.symbol == wanted.symbol)
        if wanted.side is not None:
            conditions.append(trades.c.side == wanted.side.value)
        if wanted.start is not None:
            conditions.append(trades.c.executed_at >= wanted.start)
        if wanted.end is not None:
            conditions.append(trades.c.executed_at <= wanted.end)
        joined = trades.join(portfolios, portfolios.c.id == trades.c.portfolio_id)
        query = (
            select(trades)
            .select_from(joined)
            .where(*conditions)
            .order_by(trades.c.executed_at.desc(), trades.c.sequence.desc(), trades.c.id)
        )
        rows, total = await fetch_page(self._session, query, offset=offset, limit=limit)
        return [_recorded(r) for r in rows], total

    async def batch_after(
        self, portfolio_id: str, after: tuple[datetime, int] | None, limit: int
    ) -> list[RecordedTrade]:
        """The next `limit` trades in replay order after `after` (executed_at, sequence)."""
        query = select(trades).where(trades.c.portfolio_id == portfolio_id)
        if after is not None:
            query = query.where(tuple_(trades.c.executed_at, trades.c.sequence) > after)
        query = query.order_by(trades.c.executed_at, trades.c.sequence).limit(limit)
        return [_recorded(r) for r in (await self._session.execute(query)).all()]


def _split(row: Any) -> RecordedSplit:
    day = row.effective_date
    return RecordedSplit(
        id=row.id,
        portfolio_id=row.portfolio_id,
        split=Split(
            row.symbol,
            Decimal(row.numerator),
            datetime(day.year, day.month, day.day, tzinfo=UTC),
            price=row.price,
            of=row.denominator,
        ),
        created_at=row.created_at,
    )


class SplitRepository:
    """The splits portfolios recorded; written only under the portfolio's lock (splits.py)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def of(self, portfolio_id: str) -> list[RecordedSplit]:
        """A portfolio's splits by date, then symbol."""
        return (await self.of_many([portfolio_id])).get(portfolio_id, [])

    async def of_many(self, portfolio_ids: Sequence[str]) -> dict[str, list[RecordedSplit]]:
        found: dict[str, list[RecordedSplit]] = {pid: [] for pid in portfolio_ids}
        for start in range(0, len(portfolio_ids), _IN_BATCH):
            query = (
                select(portfolio_splits)
                .where(
                    portfolio_splits.c.portfolio_id.in_(portfolio_ids[start : start + _IN_BATCH])
                )
                .order_by(
                    portfolio_splits.c.portfolio_id,
                    portfolio_splits.c.effective_date,
                    portfolio_splits.c.symbol,
                )
            )
            for row in (await self._session.execute(query)).all():
                found[row.portfolio_id].append(_split(row))
        return found

    async def add(self, recorded: RecordedSplit) -> None:
        split = recorded.split
        await self._session.execute(
            insert(portfolio_splits).values(
                id=recorded.id,
                portfolio_id=recorded.portfolio_id,
                symbol=split.symbol,
                effective_date=split.day,
                numerator=int(split.ratio),
                denominator=split.of,
                price=split.price,
                created_at=recorded.created_at,
            )
        )

    async def remove(self, portfolio_id: str, split_id: str) -> None:
        await self._session.execute(
            delete(portfolio_splits).where(
                portfolio_splits.c.portfolio_id == portfolio_id, portfolio_splits.c.id == split_id
            )
        )


async def splits_by_portfolio(
    session: AsyncSession, portfolio_ids: Sequence[str]
) -> dict[str, list[Split]]:
    """Each portfolio's splits as the book replays them."""
    found = await SplitRepository(session).of_many(portfolio_ids)
    return {pid: [r.split for r in recorded] for pid, recorded in found.items()}


class PriceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def closes(
        self, symbols: Sequence[str], start: date, end: date
    ) -> dict[str, dict[date, Decimal]]:
        found: dict[str, dict[date, Decimal]] = {s: {} for s in symbols}
        for first in range(0, len(symbols), _IN_BATCH):
            query = select(price_history).where(
                price_history.c.symbol.in_(symbols[first : first + _IN_BATCH]),
                price_history.c.day >= start,
                price_history.c.day <= end,
            )
            for row in (await self._session.execute(query)).all():
                found[row.symbol][row.day] = row.close
        return found

    async def add_missing(self, symbol: str, closes: dict[date, Decimal]) -> None:
        """Store closes for days that have none yet; days already stored keep theirs."""
        if not closes:
            return
        rows = [{"symbol": symbol, "day": d, "close": c} for d, c in sorted(closes.items())]
        module = _dialect_module(self._session)
        for start in range(0, len(rows), _IN_BATCH):
            statement = module.insert(price_history).on_conflict_do_nothing()
            await self._session.execute(statement, rows[start : start + _IN_BATCH])

    async def record(self, symbol: str, day: date, close: Decimal) -> None:
        """The latest price of `day`, replacing an earlier one of the same day."""
        module = _dialect_module(self._session)
        statement = module.insert(price_history).values(symbol=symbol, day=day, close=close)
        statement = statement.on_conflict_do_update(
            index_elements=[price_history.c.symbol, price_history.c.day],
            set_={"close": statement.excluded.close},
        )
        await self._session.execute(statement)
