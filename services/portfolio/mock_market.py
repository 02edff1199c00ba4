"""A simulated market: a few dozen real-looking US listings whose prices follow a seeded random
walk, one step per tick, and a daily history generated backwards from the opening prices.

The walk depends only on the seed and the number of steps taken, never on wall-clock timing:
the same seed gives the same sequence of prices however fast or late the ticks come.

Splits: a few listings split on a schedule the seed fixes (SPLIT_PLAN), and the market prints
prices as markets do, unadjusted: the closes before a 2-for-1 are twice those after it, and a
walk that lives through one halves at its effective date (`scale`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from services.portfolio.currencies import FxRate, SimulatedRates, rate_pair
from services.portfolio.domain import normalize_symbol
from services.portfolio.market_data import (
    Quote,
    StockInfo,
    TickFanout,
    TickStream,
    check_range,
    search_terms,
)
from services.portfolio.mock_profiles import PROFILES
from services.portfolio.profiles import StockProfile
from services.portfolio.split_calendar import SplitCalendar, SplitRatio, within
from services.runtime.clock import utc_now
from services.runtime.errors import NotFound
from services.runtime.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SOURCE = "mock"
CURRENCY = "USD"
# Each step is one simulated trading minute, whatever the tick interval: per-step volatility is
# the annual one scaled by sqrt(1 / (252 days * 390 minutes)).
STEP_YEARS = 1 / (252 * 390)
# A pull back towards the open, per step. Prices wander about a day's range around the open
# (a standard deviation near 2.5% at 25% volatility) instead of drifting off to nothing or to
# absurd prices over weeks of ticks.
REVERSION = 1 / (390 * 5)
# The history trends gently upwards into today, as equity prices tend to.
HISTORY_DRIFT = 0.07
TRADING_DAYS = 252
MIN_CENTS = 1
PERCENT_STEP = Decimal("0.0001")  # as Alpha Vantage quotes change percent
# Five years and a week: the longest range (5y) finds its baseline, the last close on or before
# its start, even when leap days and a weekend or two lie in between.
HISTORY_DAYS = 5 * 366 + 7


@dataclass(frozen=True)
class Listing:
    """A simulated instrument: its opening price (in cents precision) and annual volatility."""

    symbol: str
    name: str
    exchange: str
    open_price: Decimal
    volatility: float
    currency: str = CURRENCY


def _listing(
    symbol: str, name: str, exchange: str, price: str, volatility: float, currency: str = CURRENCY
) -> Listing:
    return Listing(symbol, name, exchange, Decimal(price), volatility, currency)


LISTINGS: tuple[Listing, ...] = (
    _listing("AAPL", "Apple Inc.", "NASDAQ", "189.50", 0.25),
    _listing("MSFT", "Microsoft Corporation", "NASDAQ", "415.30", 0.24),
    _listing("GOOGL", "Alphabet Inc. Class A", "NASDAQ", "172.40", 0.28),
    _listing("AMZN", "Amazon.com, Inc.", "NASDAQ", "185.20", 0.32),
    _listing("NVDA", "NVIDIA Corporation", "NASDAQ", "120.80", 0.50),
    _listing("META", "Meta Platforms, Inc.", "NASDAQ", "505.10", 0.38),
    _listing("TSLA", "Tesla, Inc.", "NASDAQ", "215.60", 0.55),
    _listing("JPM", "JPMorgan Chase & Co.", "NYSE", "198.40", 0.22),
    _listing("V", "Visa Inc.", "NYSE", "275.30", 0.20),
    _listing("MA", "Mastercard Incorporated", "NYSE", "452.70", 0.21),
    _listing("BAC", "Bank of America Corporation", "NYSE", "39.80", 0.27),
    _listing("JNJ", "Johnson & Johnson", "NYSE", "155.20", 0.16),
    _listing("UNH", "UnitedHealth Group Incorporated", "NYSE", "512.60", 0.24),
    _listing("PFE", "Pfizer Inc.", "NYSE", "28.70", 0.25),
    _listing("WMT", "Walmart Inc.", "NYSE", "68.50", 0.18),
    _listing("COST", "Costco Wholesale Corporation", "NASDAQ", "812.40", 0.20),
    _listing("HD", "The Home Depot, Inc.", "NYSE", "348.90", 0.22),
    _listing("PG", "The Procter & Gamble Company", "NYSE", "166.90", 0.15),
    _listing("KO", "The Coca-Cola Company", "NYSE", "62.40", 0.14),
    _listing("PEP", "PepsiCo, Inc.", "NASDAQ", "170.10", 0.15),
    _listing("MCD", "McDonald's Corporation", "NYSE", "258.30", 0.17),
    _listing("XOM", "Exxon Mobil Corporation", "NYSE", "117.80", 0.26),
    _listing("CVX", "Chevron Corporation", "NYSE", "156.20", 0.25),
    _listing("DIS", "The Walt Disney Company", "NYSE", "101.20", 0.28),
    _listing("NFLX", "Netflix, Inc.", "NASDAQ", "640.50", 0.40),
    _listing("INTC", "Intel Corporation", "NASDAQ", "31.40", 0.40),
    _listing("AMD", "Advanced Micro Devices, Inc.", "NASDAQ", "158.30", 0.50),
    _listing("IBM", "International Business Machines Corporation", "NYSE", "182.60", 0.20),
    _listing("ORCL", "Oracle Corporation", "NYSE", "138.70", 0.30),
    _listing("CSCO", "Cisco Systems, Inc.", "NASDAQ", "48.90", 0.21),
    _listing("CRM", "Salesforce, Inc.", "NYSE", "265.40", 0.33),
    _listing("ADBE", "Adobe Inc.", "NASDAQ", "520.80", 0.33),
    _listing("BA", "The Boeing Company", "NYSE", "178.20", 0.35),
    _listing("GE", "GE Aerospace", "NYSE", "162.40", 0.30),
    _listing("NKE", "NIKE, Inc.", "NYSE", "92.80", 0.30),
    _listing("SBUX", "Starbucks Corporation", "NASDAQ", "78.60", 0.28),
    _listing("T", "AT&T Inc.", "NYSE", "18.20", 0.20),
    _listing("VZ", "Verizon Communications Inc.", "NYSE", "40.60", 0.19),
    _listing("BRK.B", "Berkshire Hathaway Inc. Class B", "NYSE", "412.30", 0.17),
    _listing("SPY", "SPDR S&P 500 ETF Trust", "NYSE Arca", "545.20", 0.15),
    _listing("QQQ", "Invesco QQQ Trust", "NASDAQ", "470.80", 0.20),
    # Listings traded in other currencies (prices in their own currency).
    _listing("SAP", "SAP SE", "XETRA", "182.40", 0.24, "EUR"),
    _listing("ASML", "ASML Holding N.V.", "Euronext Amsterdam", "868.20", 0.35, "EUR"),
    _listing("NESN", "Nestle S.A.", "SIX", "92.16", 0.15, "CHF"),
    _listing("SHEL", "Shell plc", "LSE", "27.85", 0.22, "GBP"),
    _listing("7203", "Toyota Motor Corporation", "TSE", "3150", 0.28, "JPY"),
)

# Quarterly dividends per share, in the listing's currency: paid to holders at the close before
# each ex-date (mid-month of these months).
DIVIDENDS: dict[str, tuple[Decimal, tuple[int, ...]]] = {
    "KO": (Decimal("0.485"), (3, 6, 9, 12)),
    "JNJ": (Decimal("1.24"), (2, 5, 8, 11)),
    "PG": (Decimal("1.0065"), (1, 4, 7, 10)),
    "SHEL": (Decimal("0.2707"), (2, 5, 8, 11)),
}
EX_DAY = 15

# Listings that split, each by its ratio once every so many years, on a weekday the seed picks:
# the same MOCK_SEED, the same schedule on every replica and every run.
SPLIT_PLAN: dict[str, tuple[SplitRatio, int]] = {
    "NFLX": ((10, 1), 5),
    "WMT": ((3, 1), 4),
    "COST": ((2, 1), 3),
    "INTC": ((1, 2), 6),  # a reverse split
}
SPLIT_EPOCH = date(2000, 1, 3)


class SplitSchedule:
    """Which listings split when. `seeded`: SPLIT_PLAN's cadence, its first day drawn from the
    seed; `fixed`: exactly the days given (tests state theirs)."""

    def __init__(
        self,
        *,
        seed: int = 42,
        plan: Mapping[str, tuple[SplitRatio, int]] | None = None,
        fixed: Mapping[str, Mapping[date, SplitRatio]] | None = None,
    ) -> None:
        self._seed = seed
        self._plan = dict(SPLIT_PLAN if plan is None and fixed is None else plan or {})
        self._fixed = {symbol: dict(days) for symbol, days in (fixed or {}).items()}

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(self._plan) | frozenset(self._fixed)

    def between(self, symbol: str, start: date, end: date) -> dict[date, SplitRatio]:
        """`symbol`'s effective dates from `start` to `end`, both included, with ratios."""
        found = {day: r for day, r in self._fixed.get(symbol, {}).items() if start <= day <= end}
        if symbol in self._plan and start <= end:
            ratio, years = self._plan[symbol]
            period = round(years * 365.25)
            phase = random.Random(f"{self._seed}:{symbol}:splits").randrange(period)
            first = max(0, ((start - SPLIT_EPOCH).days - phase) // period - 1)
            for k in range(first, first + (end - start).days // period + 3):
                day = _weekday_on_or_after(SPLIT_EPOCH + timedelta(days=phase + k * period))
                if start <= day <= end:
                    found[day] = ratio
        return dict(sorted(found.items()))


def _weekday_on_or_after(day: date) -> date:
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _cents(price: Decimal) -> int:
    return int(price.scaleb(2).to_integral_value())


def _price(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


class PriceWalk:
    """One symbol's walk: geometric (log-space Gaussian steps, so it never crosses zero), pulled
    gently back towards its open, quoted in whole cents and never below one cent."""

    def __init__(self, open_price: Decimal, volatility: float, rng: random.Random) -> None:
        self._anchor = math.log(open_price)
        self._log_price = self._anchor
        self._sigma = volatility * math.sqrt(STEP_YEARS)
        self._rng = rng
        self.cents = _cents(open_price)

    def resume(self, price: Decimal, rng: random.Random, anchor: Decimal) -> None:
        """Continue the walk from `price` with `rng` (another replica walked it this far),
        pulled towards `anchor` (the open, split as of the price's day)."""
        self._log_price = math.log(price)
        self._anchor = math.log(anchor)
        self.cents = _cents(price)
        self._rng = rng

    def split(self, ratio: Fraction) -> None:
        """`ratio` new shares for each old one: the price and its anchor divide by it."""
        self._log_price -= math.log(ratio)
        self._anchor -= math.log(ratio)
        self.cents = max(MIN_CENTS, round(math.exp(self._log_price) * 100))

    def step(self) -> Decimal:
        pull = REVERSION * (self._anchor - self._log_price)
        self._log_price += pull + self._sigma * self._rng.gauss()
        self.cents = max(MIN_CENTS, round(math.exp(self._log_price) * 100))
        return _price(self.cents)


def backfill_closes(
    open_price: Decimal, volatility: float, rng: random.Random, *, before: date, since: date
) -> dict[date, Decimal]:
    """Weekday closes from the last weekday before `before` back to `since`, walking backwards
    from `open_price` (which is the last close: a day opens at the previous day's close)."""
    sigma = volatility / math.sqrt(TRADING_DAYS)
    drift = HISTORY_DRIFT / TRADING_DAYS
    log_price = math.log(open_price)
    closes: dict[date, Decimal] = {}
    day = _previous_weekday(before)
    while day >= since:
        closes[day] = _price(max(MIN_CENTS, round(math.exp(log_price) * 100)))
        log_price -= drift + sigma * rng.gauss()
        day = _previous_weekday(day)
    return closes


def _previous_weekday(day: date) -> date:
    day -= timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


_WORD = re.compile(r"[^\w&']+")


def _match_rank(listing: Listing, needle: str) -> int | None:
    """How well `needle` (case-folded) names `listing`: lower is better, None is no match."""
    symbol = listing.symbol.casefold()
    name = listing.name.casefold()
    if symbol == needle:
        return 0
    if symbol.startswith(needle):
        return 1
    if any(word.startswith(needle) for word in _WORD.split(name)):
        return 2
    if needle in name:
        return 3
    if needle in symbol:
        return 4
    return None


class MockMarket:
    """The simulated market. `step()` moves every price one tick (the background task calls it
    every `interval` seconds once started; tests call it directly)."""

    source = SOURCE

    def __init__(
        self,
        *,
        seed: int = 42,
        interval: float = 1.0,
        listings: Sequence[Listing] = LISTINGS,
        history_days: int = HISTORY_DAYS,
        clock: Callable[[], datetime] = utc_now,
        splits: SplitSchedule | None = None,
    ) -> None:
        """`splits`: the listings' split schedule (SPLIT_PLAN's, from the seed, unless given)."""
        self._seed = seed
        self._splits = splits if splits is not None else SplitSchedule(seed=seed)
        self._scales: dict[tuple[str, date], Fraction] = {}
        self._interval = interval
        self._history_days = history_days
        self._clock = clock
        self._listings = {listing.symbol: listing for listing in listings}
        self._walks = {
            listing.symbol: PriceWalk(
                listing.open_price, listing.volatility, random.Random(f"{seed}:{listing.symbol}")
            )
            for listing in listings
        }
        opened = clock()
        self.opening_day = opened.date()
        # The day up to which each walk has lived through its splits.
        self._split_through = dict.fromkeys(self._walks, self.opening_day)
        self._quotes = {
            listing.symbol: self._quote_at(listing, listing.open_price, opened)
            for listing in listings
        }
        self._histories: dict[str, dict[date, Decimal]] = {}
        # The last price of each day the market has lived through (from the opening day on),
        # which is that day's close once the day is over: a process running past midnight
        # gave the opening day the next day's live price as its close, and stored it for good.
        self._lived: dict[date, dict[str, Decimal]] = {
            self.opening_day: {symbol: quote.price for symbol, quote in self._quotes.items()}
        }
        self._rates = SimulatedRates(seed)
        self._fanout = TickFanout()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.steps = 0

    # --- the walk ----------------------------------------------------------------------------

    def step(self) -> list[Quote]:
        """Move every price one tick; publish and return the quotes whose price changed."""
        self.steps += 1
        now = self._clock()
        changed: list[Quote] = []
        for symbol, walk in self._walks.items():
            before = walk.cents
            self._live_through_splits(symbol, walk, now.date())
            price = walk.step()
            if walk.cents != before:
                quote = self._quote_at(self._listings[symbol], price, now)
                self._quotes[symbol] = quote
                self._lived.setdefault(now.date(), {})[symbol] = price
                changed.append(quote)
        self._fanout.publish(changed, seq=self.steps)
        return changed

    def _live_through_splits(self, symbol: str, walk: PriceWalk, today: date) -> None:
        through = self._split_through[symbol]
        if through >= today:
            return
        for new, old in self._splits.between(symbol, through + timedelta(days=1), today).values():
            walk.split(Fraction(new, old))
        self._split_through[symbol] = today

    def _quote_at(self, listing: Listing, price: Decimal, time: datetime) -> Quote:
        # Measured from the open as of the quote's day: a split is no fall.
        reference = self._split_price(listing, listing.open_price, time.date())
        change = price - reference
        percent = (change * 100 / reference).quantize(PERCENT_STEP)
        return Quote(listing.symbol, price, change, percent, time, SOURCE)

    # --- MarketData ----------------------------------------------------------------------------

    async def quote(self, symbol: str) -> Quote:
        return self._quotes[self._listing(symbol).symbol]

    async def stock(self, symbol: str) -> StockInfo:
        listing = self._listing(symbol)
        return StockInfo(listing.symbol, listing.name, listing.exchange, listing.currency)

    async def profile(self, symbol: str) -> StockProfile:
        """From mock_profiles.py; a listing it does not name is Unknown throughout."""
        listing = self._listing(symbol)
        found = PROFILES.get(listing.symbol)
        return StockProfile(listing.symbol, *found) if found else StockProfile(listing.symbol)

    async def search(self, q: str, limit: int = 10) -> list[StockInfo]:
        """Exact symbol, then symbol prefix, then a word of the name, then any part of the name
        or symbol; shorter symbols first within a rank. An empty `q` lists every symbol A-Z."""
        needle = search_terms(q, limit).casefold()
        ranked: list[tuple[int, int, str, Listing]] = []
        for listing in self._listings.values():
            if not needle:
                ranked.append((0, 0, listing.symbol, listing))
            elif (rank := _match_rank(listing, needle)) is not None:
                ranked.append((rank, len(listing.symbol), listing.symbol, listing))
        ranked.sort(key=lambda found: found[:3])
        return [
            StockInfo(listing.symbol, listing.name, listing.exchange, listing.currency)
            for *_, listing in ranked[:limit]
        ]

    async def daily_history(self, symbol: str, start: date, end: date) -> dict[date, Decimal]:
        """Weekday closes before the opening day, then each day's last price from the opening
        day on (today's: the current price)."""
        listing = self._listing(symbol)
        check_range(start, end)
        closes = {day: close for day, close in self._closes(listing).items() if start <= day <= end}
        for day, prices in self._lived.items():
            if start <= day <= end and listing.symbol in prices:
                closes[day] = prices[listing.symbol]
        return dict(sorted(closes.items()))

    def ticks(self, *, every: bool = False) -> TickStream:
        return self._fanout.subscribe(every=every)

    # --- currencies and dividends --------------------------------------------------------------

    async def fx_rate(self, base: str, quote: str) -> FxRate:
        base, quote = rate_pair(base, quote)
        day, rate = self._rates.close(base, quote, self._clock().date())
        return FxRate(base, quote, rate, day, SOURCE)

    async def fx_daily(self, base: str, quote: str, start: date, end: date) -> dict[date, Decimal]:
        base, quote = rate_pair(base, quote)
        check_range(start, end)
        return self._rates.daily(base, quote, start, end)

    async def split_calendar(
        self, start: date, end: date, symbols: Collection[str] | None = None
    ) -> SplitCalendar:
        """Every listing's splits from `start` to `end` (of `symbols` only, given them)."""
        check_range(start, end)
        wanted = self._splits.symbols if symbols is None else self._splits.symbols & set(symbols)
        return within({s: self._splits.between(s, start, end) for s in wanted}, start, end)

    def scale(self, symbol: str, day: date) -> Fraction:
        """What the splits make of a price at the opening day's level on `day`: 2 on the days
        before a 2-for-1 that took effect by the opening day, 1/2 from one after it on."""
        key = (symbol, day)
        found = self._scales.get(key)
        if found is None:
            found = Fraction(1)
            if day < self.opening_day:
                for new, old in self._splits.between(
                    symbol, day + timedelta(1), self.opening_day
                ).values():
                    found *= Fraction(new, old)
            else:
                for new, old in self._splits.between(
                    symbol, self.opening_day + timedelta(1), day
                ).values():
                    found /= Fraction(new, old)
            if len(self._scales) > 100_000:
                self._scales.clear()
            self._scales[key] = found
        return found

    def _split_price(self, listing: Listing, price: Decimal, day: date) -> Decimal:
        scale = self.scale(listing.symbol, day)
        if scale == 1:
            return price
        split = price * scale.numerator / scale.denominator
        return _price(max(MIN_CENTS, _cents(split)))

    async def dividend_calendar(self, start: date, end: date) -> dict[str, dict[date, Decimal]]:
        """Every symbol's ex-dates from `start` to `end` (only those with any)."""
        found = {symbol: await self.dividends(symbol, start, end) for symbol in DIVIDENDS}
        return {symbol: days for symbol, days in found.items() if days}

    async def dividends(self, symbol: str, start: date, end: date) -> dict[date, Decimal]:
        """Ex-dates from `start` to `end` and the dividend per share paid on each."""
        listing = self._listing(symbol)
        found: dict[date, Decimal] = {}
        if listing.symbol not in DIVIDENDS:
            return found
        amount, months = DIVIDENDS[listing.symbol]
        for year in range(start.year, end.year + 1):
            for month in months:
                ex_date = date(year, month, EX_DAY)
                if start <= ex_date <= end:
                    found[ex_date] = amount
        return found

    async def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._walk_forever(), name="mock-market-walk")
            log.info("mock market started", extra={"intervalMs": round(self._interval * 1000)})

    async def pause(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def restore(self, quotes: Iterable[Quote], step: int) -> None:
        """Continue from another replica's prices at step `step`. Each walk's randomness is
        reseeded from (seed, symbol, step), so whichever replica takes over at a given step
        walks the same prices from there."""
        self.steps = step
        for quote in quotes:
            walk = self._walks.get(quote.symbol)
            if walk is None:
                continue
            listing = self._listings[quote.symbol]
            day = quote.time.date()
            anchor = self._split_price(listing, listing.open_price, day)
            walk.resume(quote.price, random.Random(f"{self._seed}:{quote.symbol}:{step}"), anchor)
            self._split_through[quote.symbol] = day
            self._quotes[quote.symbol] = quote
            self._lived.setdefault(quote.time.date(), {})[quote.symbol] = quote.price

    async def close(self) -> None:
        self._closed = True
        await self.pause()
        self._fanout.end()

    # --- internals -----------------------------------------------------------------------------

    async def _walk_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.step()

    def _listing(self, symbol: str) -> Listing:
        clean = normalize_symbol(symbol)
        listing = self._listings.get(clean)
        if listing is None:
            raise NotFound(f"unknown symbol {clean}", reason="UNKNOWN_SYMBOL")
        return listing

    def _closes(self, listing: Listing) -> dict[date, Decimal]:
        closes = self._histories.get(listing.symbol)
        if closes is None:
            closes = backfill_closes(
                listing.open_price,
                listing.volatility,
                random.Random(f"{self._seed}:{listing.symbol}:history"),
                before=self.opening_day,
                since=self.opening_day - timedelta(days=self._history_days),
            )
            # The walk back is at today's level: a day before a split printed its multiple.
            closes = {day: self._split_price(listing, c, day) for day, c in closes.items()}
            self._histories[listing.symbol] = closes
        return closes
