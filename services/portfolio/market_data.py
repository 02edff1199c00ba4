"""Market data for the portfolio service: the interface every price source meets, its types,
its configuration, and the factory that picks the simulated market or Alpha Vantage.

Numbers, stated once: prices and changes are `Decimal` as the source gave them (the simulated
market quotes whole cents); `change` and `change_percent` are measured from the day's reference
price (the provider's previous close, the simulated market's open); `change_percent` is in
percent units, so `Decimal("1.23")` means 1.23%.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol, Self
from urllib.parse import urlsplit

from services.portfolio.domain import MAX_INPUT_LENGTH
from services.runtime.cache import Cache
from services.runtime.config import ConfigError, Env
from services.runtime.errors import InvalidArgument

log = logging.getLogger(__name__)

DEFAULT_ALPHA_VANTAGE_URL = "https://www.alphavantage.co/query"
# A subscriber that stops reading holds at most this many pending quotes (the latest of each).
TICK_BACKLOG = 1024


# --- types -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StockInfo:
    """A listed instrument. `exchange` is the venue (or, from Alpha Vantage, the region)."""

    symbol: str
    name: str
    exchange: str
    currency: str


@dataclass(frozen=True)
class Quote:
    """The latest price of a symbol. `stale` marks a cached copy served because the provider
    could not be asked (its budget was spent); `time` is when the price was observed (UTC)."""

    symbol: str
    price: Decimal
    change: Decimal
    change_percent: Decimal
    time: datetime
    source: str  # "mock" | "alphavantage"
    stale: bool = False


class MarketData(Protocol):
    """What the portfolio service asks of a price source.

    `quote`, `stock` and `daily_history` raise NotFound naming an unknown symbol and
    InvalidArgument for a malformed one; a provider that cannot be reached raises Unavailable,
    and one whose call budget is spent raises ResourceExhausted (with `retry_after`) when no
    cached answer is left to serve.
    """

    async def quote(self, symbol: str) -> Quote: ...

    async def search(self, q: str, limit: int = 10) -> list[StockInfo]:
        """Symbols and names matching `q` (case-insensitive), best matches first."""
        ...

    async def stock(self, symbol: str) -> StockInfo: ...

    async def daily_history(self, symbol: str, start: date, end: date) -> dict[date, Decimal]:
        """Daily closes from `start` to `end`, both included; days without a close are absent."""
        ...

    def ticks(self) -> TickStream:
        """Quote changes from now on, until the source closes. A subscriber that falls behind
        gets the latest quote of each symbol rather than every intermediate one."""
        ...

    async def start(self) -> None:
        """Start background work (the simulated walk, the provider's poller)."""
        ...

    async def close(self) -> None:
        """Cancel background work, release connections and end every tick stream."""
        ...


# --- checks shared by the sources --------------------------------------------------------------


def search_terms(q: str, limit: int) -> str:
    """`q` stripped, or InvalidArgument naming `q` or `limit`."""
    if limit < 1:
        raise InvalidArgument.field("limit", "must be at least 1")
    terms = q.strip()
    if len(terms) > MAX_INPUT_LENGTH:
        raise InvalidArgument.field("q", f"must be at most {MAX_INPUT_LENGTH} characters")
    return terms


def check_range(start: date, end: date) -> None:
    if start > end:
        raise InvalidArgument(
            f"from ({start.isoformat()}) must not be after to ({end.isoformat()})",
            fields=[("from", "must not be after to")],
        )


# --- ticks -------------------------------------------------------------------------------------


class TickStream:
    """One subscriber's ticks. Pending quotes are kept per symbol, latest wins, so a subscriber
    that falls behind skips stale prices instead of slowing the publisher or growing without
    bound. Iteration ends when the publisher ends or the stream is closed."""

    def __init__(self, backlog: int, unsubscribe: Callable[[TickStream], None]) -> None:
        self._pending: OrderedDict[str, Quote] = OrderedDict()
        self._unsubscribe = unsubscribe
        self._ready = asyncio.Event()
        self._backlog = backlog
        self._ended = False
        self.dropped = 0  # quotes superseded or pushed out before this subscriber read them

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Quote:
        while not self._pending:
            if self._ended:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        _, quote = self._pending.popitem(last=False)
        return quote

    async def batch(self) -> list[Quote]:
        """Every pending quote at once (a whole market step when the reader keeps up), oldest
        first; waits for at least one. An empty list: the stream has ended."""
        while not self._pending:
            if self._ended:
                return []
            self._ready.clear()
            await self._ready.wait()
        quotes = list(self._pending.values())
        self._pending.clear()
        return quotes

    def offer(self, quote: Quote) -> None:
        if self._ended:
            return
        if self._pending.pop(quote.symbol, None) is not None:
            self.dropped += 1
        elif len(self._pending) >= self._backlog:
            self._pending.popitem(last=False)
            self.dropped += 1
        self._pending[quote.symbol] = quote
        self._ready.set()

    def end(self) -> None:
        """No more ticks: the subscriber reads what is pending, then iteration stops."""
        self._ended = True
        self._ready.set()

    async def aclose(self) -> None:
        """Unsubscribe; what was pending is dropped."""
        self._unsubscribe(self)
        self._pending.clear()
        self.end()


class TickFanout:
    """Hands every published quote to every live subscriber without ever waiting on one.

    Streams are held weakly: a subscriber that drops its stream without closing it
    unsubscribes when the stream is collected.
    """

    def __init__(self, *, backlog: int = TICK_BACKLOG) -> None:
        self._streams: weakref.WeakSet[TickStream] = weakref.WeakSet()
        self._backlog = backlog
        self._ended = False

    def subscribe(self) -> TickStream:
        stream = TickStream(self._backlog, self._streams.discard)
        if self._ended:
            stream.end()
        else:
            self._streams.add(stream)
        return stream

    def publish(self, quotes: Iterable[Quote]) -> None:
        streams = list(self._streams)
        for quote in quotes:
            for stream in streams:
                stream.offer(quote)

    def end(self) -> None:
        self._ended = True
        for stream in list(self._streams):
            stream.end()
        self._streams.clear()

    @property
    def subscribers(self) -> int:
        return len(self._streams)


# --- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MarketConfig:
    """Where prices come from, read once from the environment. The API key is kept out of
    `repr` so the config can be logged."""

    use_mock_prices: bool
    mock_update_interval_ms: int
    mock_seed: int
    alpha_vantage_api_key: str | None = field(repr=False)
    alpha_vantage_url: str
    alpha_vantage_per_minute: int  # 0: no limit (a premium key)
    alpha_vantage_per_day: int  # 0: no limit
    quote_cache_ttl: float  # seconds

    @property
    def uses_alpha_vantage(self) -> bool:
        return not self.use_mock_prices and self.alpha_vantage_api_key is not None


def load_market_config(environ: Mapping[str, str] | None = None) -> MarketConfig:
    env = Env(os.environ if environ is None else environ)
    url = env.str("ALPHA_VANTAGE_URL", DEFAULT_ALPHA_VANTAGE_URL)
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(f"ALPHA_VANTAGE_URL must be an http(s) URL, got {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        # Not echoed: a key pasted into the URL must not reach the logs through this message.
        raise ConfigError(
            "ALPHA_VANTAGE_URL must not carry a query string or credentials;"
            " put the key in ALPHA_VANTAGE_API_KEY"
        )
    api_key = env.optional("ALPHA_VANTAGE_API_KEY")
    return MarketConfig(
        # A key alone selects Alpha Vantage; USE_MOCK_PRICES=true keeps the simulation anyway.
        use_mock_prices=env.bool("USE_MOCK_PRICES", api_key is None),
        mock_update_interval_ms=env.int("MOCK_UPDATE_INTERVAL", 1000, minimum=10),
        mock_seed=env.int("MOCK_SEED", 42),
        alpha_vantage_api_key=api_key,
        alpha_vantage_url=url,
        alpha_vantage_per_minute=env.int("ALPHA_VANTAGE_PER_MINUTE", 5),
        alpha_vantage_per_day=env.int("ALPHA_VANTAGE_PER_DAY", 25),
        quote_cache_ttl=env.float("QUOTE_CACHE_TTL", 60.0, minimum=1.0),
    )


def create_market_data(config: MarketConfig, cache: Cache) -> MarketData:
    """Alpha Vantage when a key is set and USE_MOCK_PRICES is not true, else the simulated
    market; says which."""
    # Imported here: both sources import this module's types.
    from services.portfolio.alpha_vantage import AlphaVantage
    from services.portfolio.mock_market import MockMarket

    if config.uses_alpha_vantage:
        log.info(
            "market data from Alpha Vantage",
            extra={
                "provider": "alphavantage",
                "url": config.alpha_vantage_url,
                "perMinute": config.alpha_vantage_per_minute,
                "perDay": config.alpha_vantage_per_day,
                "quoteCacheTtl": config.quote_cache_ttl,
            },
        )
        return AlphaVantage(config, cache)
    if config.use_mock_prices:
        reason = "USE_MOCK_PRICES=true"
        if config.alpha_vantage_api_key is not None:
            reason += " (unset USE_MOCK_PRICES to use the Alpha Vantage key)"
        log.info(
            "market data simulated",
            extra={
                "provider": "mock",
                "reason": reason,
                "seed": config.mock_seed,
                "intervalMs": config.mock_update_interval_ms,
            },
        )
    else:
        log.warning(
            "market data simulated",
            extra={
                "provider": "mock",
                "reason": "USE_MOCK_PRICES=false but ALPHA_VANTAGE_API_KEY is not set",
                "seed": config.mock_seed,
                "intervalMs": config.mock_update_interval_ms,
            },
        )
    return MockMarket(seed=config.mock_seed, interval=config.mock_update_interval_ms / 1000)
