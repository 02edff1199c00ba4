"""The event hub: trades (recorded, changed and deleted) and revaluations, handed to every
StreamPortfolioEvents subscriber.

Publishing never waits on a subscriber: each one has a bounded queue, and an event that does
not fit is dropped for that subscriber alone (logged once per episode of lagging).

With Redis configured, every event also crosses the cache's pub/sub channel, so the subscribers
of every replica see the trades recorded on the others. Each event carries a random id; a
replica that sees an id it has delivered already (its own event coming back) skips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import weakref
from collections import OrderedDict, deque
from collections.abc import Sequence
from datetime import datetime
from typing import Self

from google.protobuf.message import DecodeError
from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.domain import Totals, present_money, present_sum
from services.portfolio.messages import trade_message
from services.portfolio.records import RecordedTrade
from services.runtime.cache import Cache
from services.runtime.doorbell import Doorbell
from services.runtime.tasks import cancel_and_wait
from services.runtime.timestamps import timestamp

log = logging.getLogger(__name__)

Event = portfolio_pb2.StreamPortfolioEventsResponse

CHANNEL = "portfolio-events"
QUEUE_SIZE = 1000
ID_BYTES = 16
# Ids of recently delivered events, to recognise them when they come back through Redis.
REMEMBERED = 10_000
# How long `start` waits for the pub/sub subscription to be live.
SUBSCRIBE_WITHIN = 3.0


class Subscription:
    """One subscriber's events, at most `limit` pending; iteration ends when the hub closes."""

    def __init__(self, limit: int) -> None:
        self._pending: deque[Event] = deque()
        self._limit = limit
        self._bell = Doorbell()
        self._lagging = False
        self.dropped = 0

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        if not await self._bell.wait_for(self._pending):
            raise StopAsyncIteration
        if self._lagging and len(self._pending) <= self._limit // 2:
            self._lagging = False
        return self._pending.popleft()

    def offer(self, event: Event) -> None:
        if self._bell.ended:
            return
        if len(self._pending) >= self._limit:
            self.dropped += 1
            if not self._lagging:
                self._lagging = True
                log.warning(
                    "slow event subscriber: dropping events",
                    extra={"pending": len(self._pending), "dropped": self.dropped},
                )
            return
        self._pending.append(event)
        self._bell.ring()

    def end(self) -> None:
        self._bell.end()


class EventHub:
    def __init__(self, cache: Cache | None, *, queue_size: int = QUEUE_SIZE) -> None:
        """`cache`: the shared cache whose pub/sub reaches the other replicas (None: alone)."""
        self._cache = cache
        self._queue_size = queue_size
        self._subscriptions: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._delivered: OrderedDict[bytes, None] = OrderedDict()
        self._relay: asyncio.Task[None] | None = None
        self._probe = b""
        self._listening = asyncio.Event()

    def subscribe(self) -> Subscription:
        subscription = Subscription(self._queue_size)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        subscription.end()

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    async def publish(self, event: Event) -> None:
        event_id = os.urandom(ID_BYTES)
        self._deliver(event_id, event)
        if self._cache is not None:
            await self._cache.publish(CHANNEL, event_id + event.SerializeToString())

    async def trades_recorded(self, user_id: str, recorded: Sequence[RecordedTrade]) -> None:
        for one in recorded:
            await self.publish(Event(user_id=user_id, trade=trade_message(one)))

    async def trade_deleted(self, user_id: str, recorded: RecordedTrade) -> None:
        """A trade taken back (trade_deletion.py), as it was: open pages reload what it
        changed, as they do on a `trade`."""
        await self.publish(Event(user_id=user_id, trade_deleted=trade_message(recorded)))

    async def trade_updated(self, user_id: str, recorded: RecordedTrade) -> None:
        """A trade changed in place (an edit, or a market-paid dividend recomputed when a trade
        before its ex-date was deleted or edited: history_rewrite.py), as it is now."""
        await self.publish(Event(user_id=user_id, trade_updated=trade_message(recorded)))

    async def portfolio_valued(
        self, user_id: str, portfolio_id: str, totals: Totals, at: datetime
    ) -> None:
        value = portfolio_pb2.PortfolioValue(
            portfolio_id=portfolio_id,
            total_value=present_money(totals.total_value),
            total_gain_loss=present_sum(totals.total_value, -totals.total_cost),
            time=timestamp(at),
        )
        await self.publish(Event(user_id=user_id, portfolio_value=value))

    async def watchlist_changed(
        self,
        user_id: str,
        watchlist_id: str,
        symbols: Sequence[str],
        at: datetime,
        *,
        deleted: bool = False,
    ) -> None:
        """Sockets that follow the list follow what it holds now (facade/ws_portfolio.py)."""
        change = portfolio_pb2.WatchlistChange(
            id=watchlist_id, symbols=list(symbols), deleted=deleted, updated_at=timestamp(at)
        )
        await self.publish(Event(user_id=user_id, watchlist=change))

    # --- lifetime ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the other replicas' events, waiting (briefly) until the subscription is live."""
        if self._cache is None or self._relay is not None:
            return
        self._relay = asyncio.create_task(self._listen(self._cache), name="portfolio-events")
        self._probe = os.urandom(ID_BYTES)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SUBSCRIBE_WITHIN
        while not self._listening.is_set() and loop.time() < deadline:
            await self._cache.publish(CHANNEL, self._probe)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listening.wait(), 0.1)
        if not self._listening.is_set():
            log.warning("events from other replicas are not arriving yet (pub/sub not ready)")

    async def close(self) -> None:
        relay, self._relay = self._relay, None
        await cancel_and_wait(relay)
        for subscription in list(self._subscriptions):
            subscription.end()
        self._subscriptions.clear()

    # --- internals -----------------------------------------------------------------------------

    def _deliver(self, event_id: bytes, event: Event) -> None:
        if event_id in self._delivered:
            return
        self._delivered[event_id] = None
        if len(self._delivered) > REMEMBERED:
            self._delivered.popitem(last=False)
        for subscription in list(self._subscriptions):
            subscription.offer(event)

    async def _listen(self, cache: Cache) -> None:
        while True:
            try:
                async for message in cache.subscribe(CHANNEL):
                    self._received(message)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis went away: keep trying, events resume after
                log.warning("event relay interrupted", extra={"error": str(error)})
            await asyncio.sleep(1.0)

    def _received(self, message: bytes) -> None:
        if message == self._probe:
            self._listening.set()
            return
        if len(message) <= ID_BYTES:
            return  # another replica's probe
        try:
            event = Event.FromString(message[ID_BYTES:])
        except DecodeError:
            log.warning("undecodable portfolio event ignored")
            return
        self._deliver(message[:ID_BYTES], event)
