"""Prices for valuing portfolios: current quotes from the market, and daily closes kept in
`price_history` (fetched from the market on demand, today's latest recorded by the calculator).

Stored closes win over fetched ones for the same day: what the service recorded (or an operator
corrected) is not overwritten by a provider's later answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from services.portfolio.currencies import ONE, Valuation
from services.portfolio.exact import times
from services.portfolio.exchange import Exchange
from services.portfolio.market_data import MarketData, Quote, check_listed
from services.portfolio.records import DEFAULT_CURRENCY
from services.portfolio.repository import PriceRepository
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import DomainError

log = logging.getLogger(__name__)

# Closes from this many days before a range's baseline, so the baseline has a last close to
# carry forward over weekends and holidays.
LOOKBACK = timedelta(days=14)


def converted(listed: Mapping[str, Valuation]) -> dict[str, Decimal]:
    """Each listing's price at its rate: in the currency the listings were asked for."""
    return {symbol: times(v.local_price, v.rate) for symbol, v in listed.items()}


@dataclass(frozen=True, eq=False)
class Prices:
    db: Database
    market: MarketData
    # Values holdings listed in another currency at today's rate; None: one currency.
    exchange: Exchange | None = None
    _: KW_ONLY
    clock: Callable[[], datetime] = utc_now

    async def quotes(self, symbols: Iterable[str]) -> dict[str, Quote]:
        """The market's quote of each symbol it can price now; the others are left out (a
        book values them at their last trade price)."""
        wanted = sorted(set(symbols))
        found = await asyncio.gather(*(self._quote(s) for s in wanted))
        return {q.symbol: q for q in found if q is not None}

    async def current(
        self, symbols: Iterable[str], currency: str = DEFAULT_CURRENCY
    ) -> dict[str, Decimal]:
        """Current prices in `currency`: a holding listed in another is converted at today's
        rate."""
        return converted(await self.listings(symbols, currency))

    async def listings(
        self, symbols: Iterable[str], currency: str = DEFAULT_CURRENCY
    ) -> dict[str, Valuation]:
        """Each symbol's current price in its trading currency and today's rate into
        `currency` (without an exchange, one currency: its own at 1). A client moving a value
        by live ticks, which are in the trading currency, needs both."""
        return (await self.listings_in(symbols, [currency]))[currency]

    async def listings_in(
        self, symbols: Iterable[str], currencies: Iterable[str]
    ) -> dict[str, dict[str, Valuation]]:
        """`listings` into each of `currencies`, from one quote per symbol: portfolios in
        several currencies holding the same symbol are valued at the same price."""
        local = {s: q.price for s, q in (await self.quotes(symbols)).items()}
        found: dict[str, dict[str, Valuation]] = {}
        for currency in sorted(set(currencies)):
            if self.exchange is None:
                found[currency] = {s: Valuation(currency, p, ONE) for s, p in local.items()}
                continue
            converted = await self.exchange.convert(local, currency)
            found[currency] = {
                symbol: Valuation(trading, local[symbol], rate)
                for symbol, (_, trading, rate) in converted.items()
            }
        return found

    async def check_listed(self, symbol: str) -> None:
        """NotFound for a symbol the market does not list; a market that cannot answer now
        lets it pass (its closes will be missing)."""
        await check_listed(self.market, symbol)

    async def _quote(self, symbol: str) -> Quote | None:
        try:
            return await self.market.quote(symbol)
        except DomainError as problem:
            log.info("no quote", extra={"symbol": symbol, "why": problem.reason})
            return None

    async def history(
        self, symbols: Iterable[str], start: date, end: date
    ) -> dict[str, dict[date, Decimal]]:
        """Daily closes of `symbols` from `start - LOOKBACK` to `end`: the market's, with the
        stored ones on top; what the market gave and was not stored yet is stored, but for
        today's: a provider's bar for today is the price so far, which a stored close would
        freeze (stored ones win) long after the day's real close."""
        wanted = sorted(set(symbols))
        first = start - LOOKBACK
        fetched = await asyncio.gather(*(self._daily(s, first, end) for s in wanted))
        async with self.db.reading() as session:
            stored = await PriceRepository(session).closes(wanted, first, end)
        today = self.clock().astimezone(UTC).date()
        missing = {
            symbol: {d: c for d, c in closes.items() if d < today and d not in stored[symbol]}
            for symbol, closes in zip(wanted, fetched, strict=True)
        }
        if any(missing.values()):
            async with self.db.transaction() as session:
                repository = PriceRepository(session)
                for symbol, closes in missing.items():
                    await repository.add_missing(symbol, closes)
        return {
            symbol: {**closes, **stored[symbol]}
            for symbol, closes in zip(wanted, fetched, strict=True)
        }

    async def _daily(self, symbol: str, start: date, end: date) -> dict[date, Decimal]:
        try:
            return await self.market.daily_history(symbol, start, end)
        except DomainError as problem:
            log.info("no daily history", extra={"symbol": symbol, "why": problem.reason})
            return {}

    async def record_latest(self, quotes: Iterable[Quote]) -> None:
        """Keep each fresh quote as its symbol's close of the day it was observed, replacing an
        earlier one of that day (a stale copy, served from cache, says nothing new)."""
        fresh = sorted((q for q in quotes if not q.stale), key=lambda q: q.symbol)
        if not fresh:
            return
        async with self.db.transaction() as session:
            repository = PriceRepository(session)
            for quote in fresh:
                await repository.record(
                    quote.symbol, quote.time.astimezone(UTC).date(), quote.price
                )
