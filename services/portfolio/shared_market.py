"""One market for a whole deployment: a leader steps the price source, every replica serves
its steps.

Why: each replica used to run its own simulated market, so two replicas served two different
price walks and a trade priced against whichever one answered.

How, stated once:

* **Leader.** Replicas contend for a lease in the shared cache (`Cache.lead`: Redis, or this
  process alone), renewed every third of its duration. Each new holder gets a higher *term*
  (a fencing token). Only the holder runs the source's background work (the walk, the
  provider's poller); when it dies its lease runs out and another replica takes over within
  `lease + renew` seconds, continuing from the last published state.
* **Steps.** Every batch of price changes the leader's source produces is one *step*,
  numbered `seq` across the deployment (a new leader continues the count). The leader stores
  the whole market (every symbol's latest quote, `seq`, term) and publishes the step in one
  atomic operation that first checks it still holds the lease (`Cache.publish_held`): a leader
  that lost its lease can neither publish nor overwrite the state.
* **Followers** apply steps in order. A step from an older term than one already seen is
  fenced off; a step that skips a number (pub/sub lost messages, the subscription was down)
  makes the replica reload the stored state and hand it on as a *resync*: every symbol's latest
  quote, flagged, so a reader can tell that it missed changes.
* **Without the shared store** (Redis down): the leader keeps stepping, so its own streams
  keep ticking, and followers serve their last prices; when the store returns, a replica that
  finds another leader steps down and resyncs. Availability of prices is chosen over a single
  walk for the length of the outage, and the reload makes every replica agree afterwards.

* **Interest.** A provider's poller refreshes the symbols people asked for. Followers pass on
  what is asked of them (once a minute per symbol) so the leader's poller knows it too.

`leading` tells jobs that must run once per deployment (the revaluation) whether to run here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import AsyncGenerator, Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

from services.portfolio.currencies import FxRate, FxSource
from services.portfolio.domain import normalize_symbol
from services.portfolio.market_data import LedSource, Quote, StockInfo, TickFanout, TickStream
from services.portfolio.profiles import StockProfile
from services.portfolio.split_calendar import SplitCalendar
from services.runtime.cache import Cache, subscribe_live
from services.runtime.errors import DomainError
from services.runtime.lease import Lease
from services.runtime.streams import follow_forever
from services.runtime.tasks import cancel_all, cancel_and_wait

log = logging.getLogger(__name__)

LEASE_KEY = "market:leader"
STATE_KEY = "market:state"
CHANNEL = "market:steps"
# How long a leader's lease lasts without renewal: a dead leader is replaced within
# LEASE + RENEW seconds (the issue asks for prices again within 5 s).
LEASE = 3.0
RENEW = LEASE / 3
# How long `start` waits for the step subscription to be live before going on.
SUBSCRIBE_WITHIN = 3.0
RESUBSCRIBE_AFTER = 0.5  # at most, between two tries to subscribe
# A follower tells the leader a symbol was asked for at most this often (seconds).
INTEREST_EVERY = 60.0
INTEREST = b"?"  # starts an interest message on the steps' channel (a step is JSON: "{")


@dataclass(frozen=True)
class Step:
    """One step of the shared market, as stored and as published. `resync`: `quotes` is the
    whole market (every symbol's latest), to be taken as a fresh start."""

    term: int
    seq: int
    quotes: tuple[Quote, ...]
    resync: bool = False

    def encode(self) -> bytes:
        return json.dumps(
            {
                "term": self.term,
                "seq": self.seq,
                "resync": self.resync,
                "quotes": [_quote_json(q) for q in self.quotes],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Step:
        data = json.loads(raw)
        quotes = tuple(_quote_of(q) for q in data["quotes"])
        return cls(int(data["term"]), int(data["seq"]), quotes, bool(data["resync"]))


def _quote_json(quote: Quote) -> list[Any]:
    # Decimals as strings: exact, whatever their places.
    return [
        quote.symbol,
        str(quote.price),
        str(quote.change),
        str(quote.change_percent),
        quote.time.isoformat(),
        quote.source,
        quote.stale,
    ]


def _quote_of(fields: list[Any]) -> Quote:
    symbol, price, change, percent, time, source, stale = fields
    return Quote(
        symbol,
        Decimal(price),
        Decimal(change),
        Decimal(percent),
        datetime.fromisoformat(time),
        source,
        bool(stale),
    )


class SharedMarket:
    """MarketData over a `LedSource`, shared by every replica that uses the same cache."""

    def __init__(
        self,
        source: LedSource,
        cache: Cache,
        *,
        lease: float = LEASE,
        replica: str | None = None,
    ) -> None:
        self._source = source
        self._cache = cache
        self._lease_for = lease
        self._renew = lease / 3
        # Who leads, readable by an operator in the lease (`redis-cli get ...market:leader`).
        self.replica = replica or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.source = getattr(source, "source", "")
        self._fanout = TickFanout()
        self._latest: dict[str, Quote] = {}
        self.seq = 0  # the last step applied here
        self.term = 0  # the highest term seen
        self._at = (0, 0)  # (term, seq) of the last step applied
        self._lease: Lease | None = None  # held: this replica leads
        self._forwarding: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._switch = asyncio.Lock()  # taking over and stepping down, one at a time
        self._subscribed = asyncio.Event()
        self._noting: set[asyncio.Task[None]] = set()
        self._told: dict[str, float] = {}  # symbol -> when the leader was last told of it
        self.resyncs = 0

    @property
    def leading(self) -> bool:
        return self._lease is not None

    # --- MarketData ----------------------------------------------------------------------------

    async def quote(self, symbol: str) -> Quote:
        # The source checks the symbol (and, for a provider, notes the interest and may know a
        # fresher cached quote); the shared step wins when it is at least as recent.
        quote = await self._source.quote(symbol)
        if self._lease is None:
            await self._tell_interest(quote.symbol)
        shared = self._latest.get(quote.symbol)
        return shared if shared is not None and shared.time >= quote.time else quote

    async def search(self, q: str, limit: int = 10) -> list[StockInfo]:
        return await self._source.search(q, limit)

    async def stock(self, symbol: str) -> StockInfo:
        return await self._source.stock(symbol)

    async def profile(self, symbol: str) -> StockProfile:
        return await self._source.profile(symbol)

    async def daily_history(self, symbol: str, start: date, end: date) -> dict[date, Decimal]:
        """The source's closes, today's being the shared market's latest price."""
        closes = await self._source.daily_history(symbol, start, end)
        shared = self._latest.get(normalize_symbol(symbol))
        if shared is not None and shared.time.date() in closes:
            closes[shared.time.date()] = shared.price
        return closes

    async def fx_rate(self, base: str, quote: str) -> FxRate:
        # Rates are not stepped: the simulated ones are the same on every replica by
        # construction, a provider's are shared through the cache.
        return await cast(FxSource, self._source).fx_rate(base, quote)

    async def fx_daily(self, base: str, quote: str, start: date, end: date) -> dict[date, Decimal]:
        return await cast(FxSource, self._source).fx_daily(base, quote, start, end)

    @property
    def announces_dividends(self) -> bool:
        """Whether the source has a dividend calendar (the simulated market has; a provider
        has none, and `dividend_calendar` is then empty for want of one, not of dividends)."""
        return hasattr(self._source, "dividend_calendar")

    async def dividend_calendar(self, start: date, end: date) -> dict[str, dict[date, Decimal]]:
        """Every symbol's ex-dates in the range, from the source's calendar (none: empty)."""
        calendar = getattr(self._source, "dividend_calendar", None)
        if calendar is None:
            return {}
        found: dict[str, dict[date, Decimal]] = await calendar(start, end)
        return found

    async def split_calendar(
        self, start: date, end: date, symbols: Collection[str] | None = None
    ) -> SplitCalendar:
        """The source's splits in the range (a provider's: of `symbols` only; none: empty)."""
        calendar = getattr(self._source, "split_calendar", None)
        if calendar is None:
            return {}
        found: SplitCalendar = await calendar(start, end, symbols)
        return found

    async def dividends(self, symbol: str, start: date, end: date) -> dict[date, Decimal]:
        """The source's dividend calendar (the simulated market has one; a provider none)."""
        calendar = getattr(self._source, "dividends", None)
        if calendar is None:
            return {}
        found: dict[date, Decimal] = await calendar(symbol, start, end)
        return found

    def ticks(self, *, every: bool = False) -> TickStream:
        return self._fanout.subscribe(every=every)

    async def start(self) -> None:
        """Load the stored market, join the steps, and contend for the lead (taking it at once
        when it is free, so a lone replica ticks from its first second)."""
        if self._tasks:
            return
        stored = await self._stored()
        if stored is not None:
            self._apply(stored, resync=False)
            # The source's own opening quotes are newer than the steps published before this
            # replica started: without the stored market in it, it answered (and traded at)
            # its own opening prices until each symbol moved again.
            self._source.restore(self._latest.values(), self.seq)
        loop = asyncio.get_running_loop()
        follow = follow_forever(
            self._steps, self._received, name="market steps", backoff_max=RESUBSCRIBE_AFTER
        )
        self._tasks = [
            loop.create_task(follow, name="market-follow"),
            loop.create_task(self._contend_forever(), name="market-lead"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), SUBSCRIBE_WITHIN)
        await self._contend()

    async def close(self) -> None:
        tasks, self._tasks = [*self._tasks, *self._noting], []
        # Cancelled until they end: a loop may lose one cancellation in a Redis round and go
        # back to sleep (a shutdown then waited forever).
        await cancel_all(tasks)
        lease, self._lease = self._lease, None
        await self._stop_forwarding()
        if lease is not None:
            await self._cache.release(lease)  # the next leader need not wait for it to expire
        await self._source.close()
        self._fanout.end()

    # --- leading ---------------------------------------------------------------------------------

    async def _contend_forever(self) -> None:
        while True:
            await asyncio.sleep(self._renew)
            try:
                await self._contend()
            except asyncio.CancelledError:
                raise
            except Exception:  # a background loop: one failed round must not end it
                log.exception("market lease round failed")

    async def _contend(self) -> None:
        term = await self._cache.lead(LEASE_KEY, self.replica, self._lease_for, self.term)
        if term is None:
            return  # the store is unreachable: keep the role we had (see the module notes)
        async with self._switch:
            if term > 0 and self._lease is None:
                await self._take_over(term)
            elif term < 0:
                self.term = max(self.term, -term)
                if self._lease is not None:
                    await self._step_down("another replica leads", resync=True)

    async def _take_over(self, term: int) -> None:
        stored = await self._stored()
        if stored is not None and stored.seq > self.seq:
            self._apply(stored, resync=True)
        self.term = max(self.term, term)
        self._lease = Lease(LEASE_KEY, self.replica, term, self._lease_for)
        self._source.restore(self._latest.values(), self.seq)
        ticks = self._source.ticks()
        self._forwarding = asyncio.get_running_loop().create_task(
            self._forward(ticks), name="market-forward"
        )
        await self._source.start()
        log.info("market leader", extra={"replica": self.replica, "term": term, "seq": self.seq})

    async def _step_down(self, why: str, *, resync: bool) -> None:
        self._lease = None
        await self._stop_forwarding()
        log.info("market follower", extra={"replica": self.replica, "why": why})
        if resync:
            await self._resync(newer_term=True)

    async def _stop_forwarding(self) -> None:
        task, self._forwarding = self._forwarding, None
        await self._source.pause()
        if task is not _current():
            await cancel_and_wait(task)

    async def _forward(self, ticks: TickStream) -> None:
        """The leader's loop: each batch of the source's changes becomes the next step."""
        try:
            # Ends when this replica steps down (it stops being the forwarding task).
            while (read := await ticks.batch()).quotes and self._forwarding is _current():
                await self._publish(read.quotes)
        finally:
            await ticks.aclose()

    async def _publish(self, quotes: Iterable[Quote]) -> None:
        lease = self._lease
        if lease is None:
            return
        step = Step(lease.term, self.seq + 1, tuple(quotes))
        latest = {**self._latest, **{q.symbol: q for q in step.quotes}}
        state = Step(lease.term, step.seq, tuple(latest.values()), resync=True)
        held = await self._cache.publish_held(
            lease, STATE_KEY, state.encode(), CHANNEL, step.encode()
        )
        if held is False:
            async with self._switch:
                if self._lease is lease:
                    await self._step_down("lost the lease", resync=True)
            return
        # Published (or the store is unreachable: a leader keeps its own streams ticking),
        # unless the step came back through the subscription first and is applied already.
        if step.seq > self.seq:
            self._apply(step, resync=False)

    # --- following -------------------------------------------------------------------------------

    async def _steps(self, live: asyncio.Event) -> AsyncGenerator[bytes, None]:
        """The steps' channel; if the store goes away, follow_forever subscribes again, and
        once live this replica resyncs."""
        watch = asyncio.get_running_loop().create_task(self._on_live(live))
        try:
            async for raw in subscribe_live(self._cache, CHANNEL, live, SUBSCRIBE_WITHIN):
                yield raw
        finally:
            watch.cancel()

    async def _on_live(self, live: asyncio.Event) -> None:
        """Once (re)subscribed, catch up with what was published meanwhile."""
        await live.wait()
        first = not self._subscribed.is_set()
        self._subscribed.set()
        if not first:
            await self._resync()

    async def _tell_interest(self, symbol: str) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._told.get(symbol, -INTEREST_EVERY) < INTEREST_EVERY:
            return
        if len(self._told) > 10_000:
            self._told.clear()
        self._told[symbol] = now
        await self._cache.publish(CHANNEL, INTEREST + symbol.encode())

    async def _interest(self, symbol: str) -> None:
        """Asked of a follower: the leader's source notes it (a provider polls it from now on)."""
        with contextlib.suppress(DomainError):
            await self._source.quote(symbol)

    async def _received(self, raw: bytes) -> None:
        if raw.startswith(INTEREST):
            if self._lease is not None:
                # Not awaited here: a provider's answer must not hold the steps up.
                symbol = raw[len(INTEREST) :].decode(errors="replace")
                noting = asyncio.get_running_loop().create_task(self._interest(symbol))
                self._noting.add(noting)
                noting.add_done_callback(self._noting.discard)
            return
        try:
            step = Step.decode(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("undecodable market step ignored")
            return
        if step.term < self.term:
            return  # from a leader that has been replaced: fenced off
        if step.term > self.term:
            self.term = step.term
            lease = self._lease
            if lease is not None and lease.term < step.term:
                async with self._switch:
                    if self._lease is lease:
                        await self._step_down("a newer leader published", resync=False)
            if step.seq != self.seq + 1:
                # A new leader that does not continue from here (this replica stepped on its
                # own while the store was unreachable, or missed steps): take its market.
                await self._resync(newer_term=True)
                return
        if step.seq <= self.seq:
            return  # applied already (this replica's own step, or a duplicate)
        if step.seq == self.seq + 1:
            self._apply(step, resync=False)
        else:
            await self._resync()

    async def _resync(self, *, newer_term: bool = False) -> None:
        """Reload the stored market and hand it on whole, flagged as a resync. `newer_term`:
        a new leader's market replaces this one even where its count is lower."""
        if self._lease is not None and not newer_term:
            # The stored market is the leader's own: a count ahead of it is its own step still
            # on its way back from the store, not something it missed.
            return
        stored = await self._stored()
        if stored is None or stored.term < self.term or (stored.term, stored.seq) == self._at:
            return  # nothing to reload, or nothing missed (a resubscription in good time)
        if newer_term or stored.seq > self.seq:
            self.resyncs += 1
            self._apply(stored, resync=True)

    async def _stored(self) -> Step | None:
        raw = await self._cache.get(STATE_KEY)
        if raw is None:
            return None
        try:
            return Step.decode(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("undecodable stored market ignored")
            return None

    def _apply(self, step: Step, *, resync: bool) -> None:
        self._at = (step.term, step.seq)
        self.seq = step.seq
        self.term = max(self.term, step.term)
        for quote in step.quotes:
            self._latest[quote.symbol] = quote
        self._fanout.publish(step.quotes, seq=step.seq, resync=resync, term=step.term)


def _current() -> asyncio.Task[Any] | None:
    return asyncio.current_task()
