"""The order matcher: on every step of the shared market, the open orders that step's prices
cross are filled (or triggered, or rejected), by the replica that leads the market only.

Which replica, and what it knows, stated once:

* Only the market leader matches (as only it revalues: calculator.py). Its index of open orders
  (order_index.py) is loaded from the database on the first step it sees as leader, and dropped
  when it stops leading, so a new leader starts from what is stored, not from what it heard.
* Orders placed or cancelled on any replica reach the leader as `order` events through the
  event hub (Redis pub/sub between replicas): an open one is read back from the database and
  added, an ended one removed. Pub/sub may lose a message, so the leader also reloads the whole
  index every `reload_every` seconds: a missed order waits that long at worst.
* Nothing here has to be exact for an order to end once: every change is a conditional update
  from "open" in the database, and a fill's trade commits only with it (order_desk.py). A stale
  index entry costs a rolled-back attempt, never a second fill.
* DAY orders are expired by the leader every `expire_every` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from services.portfolio.events import EventHub, Subscription
from services.portfolio.market_data import Quote, TickStream
from services.portfolio.order_desk import Orders
from services.portfolio.order_index import OrderIndex
from services.portfolio.order_messages import PROTO_TO_STATUS
from services.portfolio.orders import Order, OrderStatus
from services.runtime.clock import Monotonic, monotonic
from services.runtime.errors import ResourceExhausted, Unavailable
from services.runtime.tasks import cancel_and_wait

log = logging.getLogger(__name__)

RELOAD_EVERY = 60.0
EXPIRE_EVERY = 5.0


class Ticks(Protocol):
    def ticks(self, *, every: bool = False) -> TickStream: ...


class OrderMatcher:
    def __init__(
        self,
        orders: Orders,
        market: Ticks,
        hub: EventHub,
        *,
        leading: Callable[[], bool] = lambda: True,
        reload_every: float = RELOAD_EVERY,
        expire_every: float = EXPIRE_EVERY,
        monotonic: Monotonic = monotonic,
    ) -> None:
        self._orders = orders
        self._market = market
        self._hub = hub
        self._leading = leading
        self._reload_every = reload_every
        self._expire_every = expire_every
        self._monotonic = monotonic
        self.index: OrderIndex | None = None  # None: not leading (or not loaded yet)
        self._loaded_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._events: Subscription | None = None
        self._heard: list[tuple[str, OrderStatus | None]] | None = None  # while loading
        self.fills = 0

    def start(self) -> None:
        if self._tasks:
            return
        # Subscribed now, not when the tasks first run: no step or event in between is lost.
        ticks = self._market.ticks(every=True)  # every crossing, even one a later step undid
        events = self._events = self._hub.subscribe()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._match_forever(ticks), name="order-matcher"),
            loop.create_task(self._follow_forever(events), name="order-events"),
            loop.create_task(self._expire_forever(), name="order-expiry"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await cancel_and_wait(task)
        events, self._events = self._events, None
        if events is not None:
            self._hub.unsubscribe(events)

    # --- one step ------------------------------------------------------------------------------

    async def load(self) -> None:
        # What is heard while the open orders are read may be missing from what is read (an
        # order committed just after the read began): applied again once the index is there.
        self._heard = []
        try:
            found = await self._orders.open_orders()
        finally:
            heard, self._heard = self._heard, None
        self.index = OrderIndex(found)
        self._loaded_at = self._monotonic()
        for order_id, status in heard:
            await self._changed(order_id, status)

    async def on_step(self, quotes: Iterable[Quote]) -> None:
        """Match one market step's quotes (the leader's work; the caller checks it leads)."""
        if self.index is None or self._monotonic() - self._loaded_at >= self._reload_every:
            await self.load()
        index = self.index
        assert index is not None
        for quote in quotes:
            for order in index.take_crossed(quote.symbol, quote.price):
                if quote.time < order.created_at:
                    # A step read late (the matcher was behind) that came before the order:
                    # not a price it could have had. It waits for a tick of its own time.
                    index.add(order)
                    continue
                if order.becomes_limit:
                    triggered = await self._orders.trigger(order, quote.time)
                    if triggered is None:
                        continue
                    if not triggered.crossed_by(quote.price):
                        _put_back(index, triggered)  # waits for its limit from now on
                        continue
                    order = triggered
                try:
                    filled = await self._orders.fill(order, quote)
                except (Unavailable, ResourceExhausted) as later:
                    # The market cannot say its currency now: the other orders go on, and
                    # this one is tried again at its next crossing.
                    why = {"orderId": order.id, "why": later.reason}
                    log.info("order not filled now", extra=why)
                    _put_back(index, order)
                    continue
                if filled is not None:
                    self.fills += 1

    # --- loops -----------------------------------------------------------------------------------

    async def _match_forever(self, ticks: TickStream) -> None:
        try:
            while (read := await ticks.batch()).quotes:
                if not self._leading():
                    self.index = None
                    continue
                try:
                    await self.on_step(read.quotes)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the database is down: reload and go on at the next step
                    log.exception("order matching failed")
                    self.index = None
        finally:
            await ticks.aclose()

    async def _follow_forever(self, events: Subscription) -> None:
        async for event in events:
            if not event.HasField("order"):
                continue
            change = (event.order.id, PROTO_TO_STATUS.get(event.order.status))
            if self._heard is not None:
                self._heard.append(change)
            if self.index is None:
                continue
            try:
                await self._changed(*change)
            except asyncio.CancelledError:
                raise
            except Exception:  # the periodic reload catches up
                log.warning("order event not applied", exc_info=True)

    async def _changed(self, order_id: str, status: OrderStatus | None) -> None:
        if status is not OrderStatus.OPEN:
            if self.index is not None:
                self.index.remove(order_id)
            return
        found = await self._orders.open_order(order_id)
        if found is not None and self.index is not None:
            self.index.add(found)

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(self._expire_every)
            if not self._leading():
                continue
            try:
                for order in await self._orders.expire_due():
                    if self.index is not None:
                        self.index.remove(order.id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("order expiry failed")


def _put_back(index: OrderIndex, order: Order) -> None:
    """Watch `order` again after an await, unless its event put a fresher copy there meanwhile
    (a split's new terms): this copy must not replace it."""
    if order.id not in index:
        index.add(order)
