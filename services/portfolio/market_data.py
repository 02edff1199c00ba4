"""Market data for the portfolio service: the interface every price source meets, its types and
the ticks they publish. Their configuration is in config.py; server.py picks the source.

Numbers, stated once: prices and changes are `Decimal` as the source gave them (the simulated
market quotes whole cents); `change` and `change_percent` are measured from the day's reference
price (the provider's previous close, the simulated market's open); `change_percent` is in
percent units, so `Decimal("1.23")` means 1.23%.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol, Self

from services.portfolio.domain import MAX_INPUT_LENGTH
from services.runtime.doorbell import Doorbell
from services.runtime.errors import InvalidArgument

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
        self._bell = Doorbell()
        self._backlog = backlog
        self.dropped = 0  # quotes superseded or pushed out before this subscriber read them

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Quote:
        if not await self._bell.wait_for(self._pending):
            raise StopAsyncIteration
        _, quote = self._pending.popitem(last=False)
        return quote

    async def batch(self) -> list[Quote]:
        """Every pending quote at once (a whole market step when the reader keeps up), oldest
        first; waits for at least one. An empty list: the stream has ended."""
        if not await self._bell.wait_for(self._pending):
            return []
        quotes = list(self._pending.values())
        self._pending.clear()
        return quotes

    def offer(self, quote: Quote) -> None:
        if self._bell.ended:
            return
        if self._pending.pop(quote.symbol, None) is not None:
            self.dropped += 1
        elif len(self._pending) >= self._backlog:
            self._pending.popitem(last=False)
            self.dropped += 1
        self._pending[quote.symbol] = quote
        self._bell.ring()

    def end(self) -> None:
        """No more ticks: the subscriber reads what is pending, then iteration stops."""
        self._bell.end()

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
