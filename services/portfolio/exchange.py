"""Exchange rates for the portfolio service: the market's rates, with daily closes kept in
`price_history` under the pair's key ("EUR/USD"), and trades converted into their portfolio's
currency when they are recorded.

A recorded trade keeps its price and fees as given, in the stock's trading currency, with the
rate of its date (`TradeFx`); the book gets the price and fees converted at that rate, so
costs, cash and realized gains are in the portfolio's currency at the rate of each trade's day.
Holdings are valued at today's rate (prices.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import cast

from services.portfolio.currencies import (
    ONE,
    FxRate,
    FxSource,
    TradeFx,
    pair_key,
    require_currency,
)
from services.portfolio.domain import Split, Trade
from services.portfolio.exact import times
from services.portfolio.market_data import MarketData
from services.portfolio.periods import optional_day
from services.portfolio.repository import PriceRepository, portfolio_currency
from services.portfolio.wire_numbers import PRICE_PLACES, rounded
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import (
    DomainError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)

log = logging.getLogger(__name__)

# Closes from this long before a day, so a day after a weekend or holiday finds the last one.
LOOKBACK = timedelta(days=14)
PAST_RATES = 50_000
# A day this long ago has its close published, or never will (a weekend, a holiday).
SETTLED_AFTER = timedelta(days=7)
# The least price a split keeps (PRICE_PLACES places).
MIN_PRICE = Decimal(1).scaleb(-PRICE_PLACES)


def at_rate(trade: Trade, fx: TradeFx) -> Trade:
    """`trade`, priced as `fx` says it was given (`fx.local_price`, `fx.local_fees`), with its
    price and fees in the portfolio's currency at `fx.rate`."""
    given = replace(trade, price=fx.local_price, fees=fx.local_fees)
    if fx.rate == ONE:
        return given
    return replace(given, price=times(given.price, fx.rate), fees=times(given.fees, fx.rate))


class Exchange:
    def __init__(
        self,
        db: Database,
        market: MarketData,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._db = db
        self._market = market
        # Every source here quotes rates too (mock_market, alpha_vantage, shared_market).
        self._rates = cast(FxSource, market)
        self._clock = clock
        self._currencies: dict[str, str] = {}
        # Rates of past days as read (an import converts thousands of trades of few days).
        self._past: dict[tuple[str, str, date], FxRate] = {}

    # --- rates -----------------------------------------------------------------------------

    async def rate_asked(self, base: str, quote: str, day: str) -> FxRate:
        """`rate`, with the day as a request states it (YYYY-MM-DD; blank: now)."""
        return await self.rate(base, quote, optional_day("date", day))

    async def rate(self, base: str, quote: str, day: date | None = None) -> FxRate:
        """How many `quote` one `base` buys: live, or the close of `day` (the last before it
        when the market was shut). 422 naming `from`/`to` for a code the service does not
        know; 404 when no rate is known for the day."""
        base, quote = require_currency(base, "from"), require_currency(quote, "to")
        today = self._clock().astimezone(UTC).date()
        if base == quote:
            return FxRate(base, quote, ONE, min(day or today, today), "")
        if day is None or day >= today:
            return await self._rates.fx_rate(base, quote)
        known = self._past.get((base, quote, day))
        if known is not None:
            return known
        since = day - LOOKBACK if day > date.min + LOOKBACK else date.min
        closes = await self.history(base, quote, since, day)
        found = [d for d in closes if d <= day]
        if not found:
            raise NotFound(
                f"no {base}/{quote} rate known on or before {day.isoformat()}",
                reason="NO_EXCHANGE_RATE",
            )
        last = max(found)
        rate = FxRate(base, quote, closes[last], last, getattr(self._market, "source", ""))
        # Kept only once it cannot change: the day's own close, or an earlier one for a day
        # long enough ago (a weekend's); a recent day's close may not be published yet.
        if last == day or day <= today - SETTLED_AFTER:
            if len(self._past) >= PAST_RATES:
                self._past.clear()
            self._past[(base, quote, day)] = rate
        return rate

    async def history(self, base: str, quote: str, start: date, end: date) -> dict[date, Decimal]:
        """Daily closes of base/quote from `start` to `end`: the market's, with the stored ones
        on top; what the market gave and was not stored yet is stored. Empty for base == quote."""
        if base == quote:
            return {}
        key = pair_key(base, quote)
        try:
            fetched = await self._rates.fx_daily(base, quote, start, end)
        except DomainError as problem:
            log.info("no daily rates", extra={"pair": key, "why": problem.reason})
            fetched = {}
        async with self._db.reading() as session:
            stored = (await PriceRepository(session).closes([key], start, end))[key]
        # Today's bar is the rate so far, not a close: stored, it would stand for the day's
        # close for good (stored closes win), so only finished days are kept.
        today = self._clock().astimezone(UTC).date()
        missing = {d: c for d, c in fetched.items() if d not in stored and d < today}
        if missing:
            async with self._db.transaction() as session:
                await PriceRepository(session).add_missing(key, missing)
        return {**fetched, **stored}

    async def rates_on(
        self, currencies: Iterable[str], quote: str, start: date, end: date
    ) -> dict[str, dict[date, Decimal]]:
        """Daily closes of each currency into `quote`, from `start - LOOKBACK`, and today's
        live rate as today's close."""
        wanted = sorted(set(currencies) - {quote})
        found = await asyncio.gather(
            *(self.history(c, quote, start - LOOKBACK, end) for c in wanted)
        )
        closes = dict(zip(wanted, found, strict=True))
        today = self._clock().astimezone(UTC).date()
        if start <= today <= end:
            for currency in wanted:
                try:
                    live = await self._rates.fx_rate(currency, quote)
                except DomainError:
                    continue
                closes[currency][today] = live.rate
        return closes

    # --- listings --------------------------------------------------------------------------

    async def currency_of(self, symbol: str, default: str) -> str:
        """The symbol's trading currency as the market lists it (kept once known); `default`
        only for a listing that names none. A market that cannot answer now (Alpha Vantage out
        of calls, down) raises its error: a guess would book a dollar price as yen, for good."""
        known = self._currencies.get(symbol)
        if known is not None:
            return known
        try:
            info = await self._market.stock(symbol)
        except NotFound:
            raise
        except DomainError as problem:
            said = (
                f"the market cannot say now which currency {symbol} trades in"
                f" ({problem.message}); try again shortly"
            )
            if isinstance(problem, ResourceExhausted):
                raise ResourceExhausted(said, retry_after=problem.retry_after) from None
            raise Unavailable(said, reason="CURRENCY_UNKNOWN") from None
        currency = info.currency.strip().upper()
        if not currency:
            return default  # not kept: another answer may name it
        self._currencies[symbol] = currency
        return currency

    async def convert(
        self, price: dict[str, Decimal], currency: str
    ) -> dict[str, tuple[Decimal, str, Decimal]]:
        """Each symbol's price in `currency` at today's rate: (price, trading currency, rate).
        A symbol whose currency or rate cannot be known now is left out (a book values it at
        its last trade price, which is in the portfolio's currency already)."""
        converted: dict[str, tuple[Decimal, str, Decimal]] = {}
        for symbol, local in price.items():
            try:
                trading = await self.currency_of(symbol, currency)
                rate = ONE
                if trading != currency:
                    rate = (await self.rate(trading, currency)).rate
            except DomainError as problem:
                log.info("not converted", extra={"symbol": symbol, "why": problem.reason})
                continue
            converted[symbol] = (times(local, rate), trading, rate)
        return converted

    # --- trades ----------------------------------------------------------------------------

    async def portfolio_currency(self, user_id: str, portfolio_id: str) -> str:
        return await portfolio_currency(self._db, user_id, portfolio_id)

    async def trade_in(
        self, trade: Trade, currency: str, *, cash_in: str = ""
    ) -> tuple[Trade, TradeFx]:
        """`trade` (priced in its stock's trading currency) with its price and fees in the
        portfolio's `currency` at the rate of its date, and what it was given as. A cash row
        (no symbol) is in `cash_in` when given (an export's `currency` column: a euro
        portfolio's deposit imported into a dollar one), else in the portfolio's currency."""
        trading = cash_in or currency
        if trade.side.names_symbol:
            trading = await self.currency_of(trade.symbol, currency)
            trading = require_currency(trading, "symbol")
        rate = await self._rate_of(trading, currency, trade.day)
        fx = TradeFx(trading, rate, trade.price, trade.fees)
        return at_rate(trade, fx), fx

    async def split_in(self, split: Split, currency: str, *, given_in: str = "") -> Split:
        """`split` with its cash-in-lieu price in the portfolio's `currency`, converted as a
        trade's price is: from its stock's trading currency, or from `given_in` when given (an
        export's `currency` column on a split row: the currency of the portfolio it came
        from), at the rate of its day; rounded to a price's places, as CreateSplit takes one.
        A split with no price is as it was."""
        if split.price is None:
            return split
        trading = given_in or require_currency(
            await self.currency_of(split.symbol, currency), "symbol"
        )
        rate = await self._rate_of(trading, currency, split.day)
        if rate == ONE:
            return split
        price = rounded(times(split.price, rate), PRICE_PLACES)
        if price <= 0:
            raise InvalidArgument.field(
                "price",
                f"is {format(split.price, 'f')} {trading}, less than {MIN_PRICE:f} {currency}"
                f" at the rate of {split.day.isoformat()}",
            )
        return replace(split, price=price)

    async def _rate_of(self, base: str, quote: str, day: date) -> Decimal:
        """The rate of a trade or split of `day` (today or later: the live one)."""
        if base == quote:
            return ONE
        today = self._clock().astimezone(UTC).date()
        return (await self.rate(base, quote, None if day >= today else day)).rate
