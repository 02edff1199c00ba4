"""Market data for the portfolio service: the interface every price source meets, its types and
the ticks they publish. Their configuration is in config.py; server.py picks the source.

Numbers, stated once: prices and changes are `Decimal` as the source gave them (the simulated
market quotes whole cents); `change` and `change_percent` are measured from the day's reference
price (the provider's previous close, the simulated market's open); `change_percent` is in
percent units, so `Decimal("1.23")` means 1.23%.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol, Self

from services.portfolio.domain import MAX_INPUT_LENGTH
from services.portfolio.profiles import StockProfile
from services.portfolio.split_calendar import SplitCalendar
from services.runtime.doorbell import Doorbell
from services.runtime.errors import DomainError, InvalidArgument, NotFound

log = logging.getLogger(__name__)

# A subscriber that stops reading holds at most this many pending quotes (the latest of each).
TICK_BACKLOG = 1024
# Quotes an every-step subscriber (the order matcher, the alert watch) may have waiting: about
# a thousand steps of the simulated market's symbols.
EVERY_STEP_BACKLOG = 50_000


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

    async def profile(self, symbol: str) -> StockProfile:
        """The listing's sector, industry, country and asset type (any of them "Unknown"),
        raising as `stock` does."""
        ...

    async def daily_history(self, symbol: str, start: date, end: date) -> dict[date, Decimal]:
        """Daily closes from `start` to `end`, both included; days without a close are absent."""
        ...

    def ticks(self, *, every: bool = False) -> TickStream:
        """Quote changes from now on, until the source closes. A subscriber that falls behind
        gets the latest quote of each symbol rather than every intermediate one; with `every`,
        each change in order (what matches orders and alerts must see every crossing)."""
        ...

    async def start(self) -> None:
        """Start background work (the simulated walk, the provider's poller)."""
        ...

    async def close(self) -> None:
        """Cancel background work, release connections and end every tick stream."""
        ...


async def check_listed(market: MarketData, symbol: str) -> None:
    """NotFound for a symbol `market` does not list. A market that cannot answer now (down, or
    out of calls) lets it pass: the caller goes on unchecked rather than fail for it."""
    try:
        await market.stock(symbol)
    except NotFound:
        raise
    except DomainError as problem:
        log.info("listing not checked", extra={"symbol": symbol, "why": problem.reason})


class SplitSource(Protocol):
    """A source with a split calendar (split_calendar.py): the simulated market's schedule,
    Alpha Vantage's SPLITS. Found with `getattr`, as `dividend_calendar` is: a source without
    one announces no split."""

    async def split_calendar(
        self, start: date, end: date, symbols: Collection[str] | None = None
    ) -> SplitCalendar:
        """Splits effective from `start` to `end` (both included) by symbol and day, of
        `symbols` only when given; a provider, which cannot list every listing's, answers
        for `symbols` alone (None: nothing) and leaves out a symbol it cannot ask now."""
        ...


class LedSource(MarketData, Protocol):
    """A source that one replica of a deployment drives for all (services/portfolio/
    shared_market.py): it can stop its background work without ending its tick streams, and
    continue from prices another replica's copy had reached."""

    async def pause(self) -> None:
        """Stop background work (the walk, the poller); `start` resumes it."""
        ...

    def restore(self, quotes: Iterable[Quote], step: int) -> None:
        """Continue from these latest quotes, reached at the deployment's step `step`."""
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


@dataclass(frozen=True)
class TickBatch:
    """What a subscriber reads at once: every price change after market step `since` up to step
    `seq`, the latest quote of each symbol. `resync`: these quotes are not a continuation the
    reader can trust (the market was reloaded after a gap, or quotes were pushed out of a full
    backlog), so take them as a fresh start. Steps are numbered by whoever publishes (the
    deployment's shared market, or a source's own step count); 0 when unnumbered."""

    quotes: list[Quote]
    since: int = 0
    seq: int = 0
    resync: bool = False
    term: int = 0  # the leader's term at step `seq` (shared markets; else 0)


class TickStream:
    """One subscriber's ticks. Pending quotes are kept per symbol, latest wins, so a subscriber
    that falls behind skips stale prices instead of slowing the publisher or growing without
    bound. An `every`-step stream keeps each change instead, in order, up to EVERY_STEP_BACKLOG
    (past it the oldest go, and the next read is a resync): a stop crossed by one step and
    uncrossed by the next, both published while its matcher was busy, must still fill at the
    first. Iteration ends when the publisher ends or the stream is closed."""

    def __init__(
        self,
        backlog: int,
        unsubscribe: Callable[[TickStream], None],
        seq: int,
        *,
        every: bool = False,
    ) -> None:
        self._pending: OrderedDict[str, Quote] = OrderedDict()
        self._every: deque[Quote] | None = deque() if every else None
        self._unsubscribe = unsubscribe
        self._bell = Doorbell()
        self._backlog = backlog
        self._delivered = seq  # the reader has every change up to this step
        self._latest = seq  # the newest step among the pending quotes
        self._resync = False
        self._term = 0
        self.dropped = 0  # quotes superseded or pushed out before this subscriber read them

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Quote:
        waiting = self._waiting
        if not await self._bell.wait_for(waiting):
            raise StopAsyncIteration
        if self._every is not None:
            quote = self._every.popleft()
        else:
            _, quote = self._pending.popitem(last=False)
        if not waiting:
            self._delivered = self._latest
        return quote

    @property
    def _waiting(self) -> deque[Quote] | OrderedDict[str, Quote]:
        return self._every if self._every is not None else self._pending

    async def batch(self) -> TickBatch:
        """Every pending quote at once (a whole market step when the reader keeps up), oldest
        first; waits for at least one. No quotes: the stream has ended."""
        waiting = self._waiting
        if not await self._bell.wait_for(waiting):
            return TickBatch([], self._delivered, self._delivered)
        quotes = list(waiting.values()) if isinstance(waiting, OrderedDict) else list(waiting)
        waiting.clear()
        read = TickBatch(quotes, self._delivered, self._latest, self._resync, self._term)
        self._delivered, self._resync = self._latest, False
        return read

    def offer_step(self, quotes: Iterable[Quote], seq: int, resync: bool, term: int = 0) -> None:
        """A market step's changed quotes (possibly none: the step still counts). A resync or a
        newer leader's term numbers the stream afresh from `seq`: a leader back from an outage
        reloads the stored market and counts on from below what it had reached, and a stream
        that kept the higher number repeated it for every step until the count passed it (and
        the facade dropped each as delivered already)."""
        if self._bell.ended:
            return
        renumbered = resync or term > self._term
        self._term = max(self._term, term)
        self._resync = self._resync or resync
        offered = False
        for quote in quotes:
            self.offer(quote)
            offered = True
        latest = seq if renumbered else max(self._latest, seq)
        if offered or self._waiting:
            self._latest = latest
            self._delivered = min(self._delivered, latest)
        else:
            # Nothing pending, nothing new: the reader is up to date to this step.
            self._delivered = self._latest = latest

    def offer(self, quote: Quote) -> None:
        if self._bell.ended:
            return
        if self._every is not None:
            if len(self._every) >= EVERY_STEP_BACKLOG:
                self._every.popleft()
                self.dropped += 1
                self._resync = True
            self._every.append(quote)
            self._bell.ring()
            return
        if self._pending.pop(quote.symbol, None) is not None:
            self.dropped += 1
        elif len(self._pending) >= self._backlog:
            self._pending.popitem(last=False)
            self.dropped += 1
            self._resync = True  # a symbol's change is lost, not merely superseded
        self._pending[quote.symbol] = quote
        self._bell.ring()

    def end(self) -> None:
        """No more ticks: the subscriber reads what is pending, then iteration stops."""
        self._bell.end()

    async def aclose(self) -> None:
        """Unsubscribe; what was pending is dropped."""
        self._unsubscribe(self)
        self._waiting.clear()
        self.end()


class OpenTicks(Protocol):
    """A source's `ticks` (or a fanout's `subscribe`): a new subscriber's stream."""

    def __call__(self, *, every: bool = False) -> TickStream: ...


class TickFanout:
    """Hands every published quote to every live subscriber without ever waiting on one.

    Streams are held weakly: a subscriber that drops its stream without closing it
    unsubscribes when the stream is collected.
    """

    def __init__(self, *, backlog: int = TICK_BACKLOG) -> None:
        self._streams: weakref.WeakSet[TickStream] = weakref.WeakSet()
        self._backlog = backlog
        self._ended = False
        self.seq = 0  # the last step published

    def subscribe(self, *, every: bool = False) -> TickStream:
        stream = TickStream(self._backlog, self._streams.discard, self.seq, every=every)
        if self._ended:
            stream.end()
        else:
            self._streams.add(stream)
        return stream

    def publish(
        self, quotes: Iterable[Quote], *, seq: int = 0, resync: bool = False, term: int = 0
    ) -> None:
        """One step's changed quotes; `seq` 0 numbers it after the last one."""
        self.seq = seq or self.seq + 1
        quotes = list(quotes)
        for stream in list(self._streams):
            stream.offer_step(quotes, self.seq, resync, term)

    def end(self) -> None:
        self._ended = True
        for stream in list(self._streams):
            stream.end()
        self._streams.clear()

    @property
    def subscribers(self) -> int:
        return len(self._streams)
