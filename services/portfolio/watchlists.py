"""Watchlists: a user's named, ordered lists of symbols, each read with its symbols' latest
quotes. Another user's list is as absent as one that never existed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.domain import normalize_symbol
from services.portfolio.events import EventHub
from services.portfolio.market_data import MarketData, Quote
from services.portfolio.prices import Prices
from services.portfolio.records import check_room, clean_name
from services.portfolio.watch_store import WatchlistRecord, WatchlistRepository
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import InvalidArgument, NotFound
from services.runtime.pagination import Page

MAX_WATCHLISTS = 50
MAX_SYMBOLS = 100


@dataclass(frozen=True)
class QuotedWatchlist:
    """A watchlist and the latest quote of each symbol the market can price now, in order."""

    record: WatchlistRecord
    quotes: list[Quote]


def watchlist_not_found(watchlist_id: str) -> NotFound:
    return NotFound(f"watchlist {watchlist_id} not found", reason="WATCHLIST_NOT_FOUND")


def clean_symbols(raw: Sequence[str]) -> tuple[str, ...]:
    """Upper case, in the order given; a repeat is refused (422 naming it)."""
    symbols = tuple(normalize_symbol(s) for s in raw)
    if len(symbols) > MAX_SYMBOLS:
        raise InvalidArgument.field("symbols", f"must be at most {MAX_SYMBOLS}")
    seen: set[str] = set()
    for symbol in symbols:
        if symbol in seen:
            raise InvalidArgument.field("symbols", f"lists {symbol} twice")
        seen.add(symbol)
    return symbols


def _require_id(raw: str) -> str:
    watchlist_id = raw.strip()
    if not watchlist_id:
        raise InvalidArgument.field("id", "is required")
    return watchlist_id


class Watchlists:
    def __init__(
        self,
        db: Database,
        market: MarketData,
        prices: Prices,
        *,
        events: EventHub | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """`events`: where an edit or a deletion is told, so that sockets following the list
        follow it as it is now."""
        self._db = db
        self._market = market
        self._prices = prices
        self._events = events
        self._clock = clock

    async def create(
        self,
        user_id: str,
        name: str,
        symbols: Sequence[str],
        *,
        settle: Callable[[AsyncSession, QuotedWatchlist], Awaitable[None]] | None = None,
    ) -> QuotedWatchlist:
        """The new list with its quotes (read before, so that `settle` commits with the list,
        given the answer: a caller gone after the commit leaves it for its retry)."""
        now = self._clock()
        record = WatchlistRecord(
            str(uuid.uuid4()), user_id, clean_name(name), await self._known(symbols), now, now
        )
        quoted = await self._quoted(record)
        async with self._db.transaction() as session:
            repository = WatchlistRepository(session)
            held = await repository.count(user_id)
            check_room(held, MAX_WATCHLISTS, "watchlists", reason="TOO_MANY_WATCHLISTS")
            await repository.add(record)
            if settle is not None:
                await settle(session, quoted)
        return quoted

    async def get(self, user_id: str, watchlist_id: str) -> QuotedWatchlist:
        watchlist_id = _require_id(watchlist_id)
        async with self._db.reading() as session:
            record = await WatchlistRepository(session).get(watchlist_id, user_id)
        if record is None:
            raise watchlist_not_found(watchlist_id)
        return await self._quoted(record)

    async def page(self, user_id: str, page: Page) -> tuple[list[QuotedWatchlist], int]:
        async with self._db.reading() as session:
            found, total = await WatchlistRepository(session).page(
                user_id, offset=page.offset, limit=page.limit
            )
        quotes = await self._prices.quotes({s for w in found for s in w.symbols})
        return [self._ordered(w, quotes) for w in found], total

    async def update(
        self, user_id: str, watchlist_id: str, name: str, symbols: Sequence[str]
    ) -> QuotedWatchlist:
        """Replace the name and the whole ordered list (reorder, add, remove at once)."""
        watchlist_id = _require_id(watchlist_id)
        cleaned_name = clean_name(name)
        cleaned = await self._known(symbols)
        async with self._db.transaction() as session:
            repository = WatchlistRepository(session)
            record = await repository.get(watchlist_id, user_id, lock=True)
            if record is None:
                raise watchlist_not_found(watchlist_id)
            stamp = self._after(record.updated_at)
            record = replace(record, name=cleaned_name, symbols=cleaned, updated_at=stamp)
            await repository.replace(record)
        if self._events is not None:
            await self._events.watchlist_changed(
                user_id, record.id, record.symbols, record.updated_at
            )
        return await self._quoted(record)

    async def delete(self, user_id: str, watchlist_id: str) -> None:
        watchlist_id = _require_id(watchlist_id)
        async with self._db.transaction() as session:
            repository = WatchlistRepository(session)
            record = await repository.get(watchlist_id, user_id, lock=True)
            if record is None or not await repository.remove(watchlist_id, user_id):
                raise watchlist_not_found(watchlist_id)
            stamp = self._after(record.updated_at)
        if self._events is not None:
            await self._events.watchlist_changed(user_id, watchlist_id, (), stamp, deleted=True)

    def _after(self, previous: datetime) -> datetime:
        """A change's stamp: now, but always after the change it follows (read locked). Sockets
        drop a change older than the one they hold, and replicas' clocks differ: the stamps of
        one list must rise in the order its changes commit."""
        return max(self._clock(), previous + timedelta(microseconds=1))

    async def _known(self, raw: Sequence[str]) -> tuple[str, ...]:
        """The symbols cleaned, each known to the market (NotFound names the first unknown)."""
        symbols = clean_symbols(raw)
        await asyncio.gather(*(self._market.stock(s) for s in symbols))
        return symbols

    async def _quoted(self, record: WatchlistRecord) -> QuotedWatchlist:
        return self._ordered(record, await self._prices.quotes(record.symbols))

    @staticmethod
    def _ordered(record: WatchlistRecord, quotes: dict[str, Quote]) -> QuotedWatchlist:
        return QuotedWatchlist(record, [quotes[s] for s in record.symbols if s in quotes])
