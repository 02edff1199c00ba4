"""The alert evaluator: every replica keeps the deployment's active alerts in an index
(alert_index.py) and feeds it every tick of the shared market; only the replica leading the
market fires them, so an alert is evaluated once per deployment, not once per replica.

A firing is stored in one transaction (the firing, and the alert deactivated or its last
firing set, by a conditional update: an alert fires at most once even if two replicas believed
they led for a moment), then published on the event hub as an `alert` event, which reaches the
facades through every replica's StreamPortfolioEvents.

Keeping the indexes in step: a change to an alert (created, paused, resumed, deleted, fired)
is announced by its id on the cache's `alerts:changed` channel, and each replica reads that
alert's row again. The row is the truth (the leader's firing changes it too), the notice stays
tiny, and a replica that missed notices (its subscription was down) reloads every active alert
when it is back, as it does when it takes the lead.

Percent alerts measure a move against prices up to a week old, which every replica keeps in
memory as it follows the market. So that a restart (a deploy replaces every replica in turn)
does not start those windows empty, the leader saves each symbol's coarse prices (one per five
minutes) in the cache every five minutes and when it stops, and a replica starting loads them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
import zlib
from collections.abc import AsyncGenerator, Callable, Sequence

from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.alert_index import COARSE_SPACING, COARSE_SPAN, AlertIndex, Firing
from services.portfolio.events import EventHub
from services.portfolio.market_data import OpenTicks, TickStream
from services.portfolio.watch_messages import fired_message, firing_text
from services.portfolio.watch_store import AlertRepository, FiredAlertRepository, FiredRecord
from services.runtime.cache import Cache
from services.runtime.db import Database
from services.runtime.streams import follow_forever
from services.runtime.tasks import cancel_and_wait

log = logging.getLogger(__name__)

CHANNEL = "alerts:changed"
RESUBSCRIBE_AFTER = 1.0  # at most, between two tries to subscribe
# A service started with its database away tries to load the alerts again, backing off to this.
LOAD_RETRY_MAX = 30.0
PROBE = b"?"  # starts a probe message (an alert id never does)
# The recent prices percent alerts measure against, saved by the leader for a restart.
HISTORY_KEY = "alerts:price-history"
HISTORY_VERSION = 1


class AlertWatch:
    def __init__(
        self,
        db: Database,
        ticks: OpenTicks,
        hub: EventHub,
        cache: Cache,
        *,
        leading: Callable[[], bool],
        history_every: float = COARSE_SPACING,
    ) -> None:
        """`history_every`: seconds between two saves of the recent prices (by the leader)."""
        self._db = db
        self._history_every = history_every
        self._open_ticks = ticks
        self._hub = hub
        self._cache = cache
        self._leading = leading
        self.index = AlertIndex()
        self._led = False
        self._tasks: list[asyncio.Task[None]] = []
        self._firings: asyncio.Queue[list[Firing]] = asyncio.Queue()
        self._listening = asyncio.Event()
        self.batches = 0  # batches of market steps evaluated
        self.fired = 0  # firings stored by this replica
        self.unstored = 0  # firings the database refused (undone in the index)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        try:
            await self.reload()
        except Exception as error:
            # The service starts with its database away (it says NOT_SERVING meanwhile), as
            # every other part does: the alerts are loaded once it answers.
            log.warning("alerts not loaded yet; retrying", extra={"error": str(error)})
            tasks.append(loop.create_task(self._load_until_done(), name="alerts-load"))
        await self._load_history()
        # Subscribed now: no tick after the load is missed. Every step, in order: a crossing
        # that the next step undid, both read at once, still fires.
        ticks = self._open_ticks(every=True)
        changes = follow_forever(
            self._changes, self._on_change, name="alert changes", backoff_max=RESUBSCRIBE_AFTER
        )
        self._tasks = [
            *tasks,
            loop.create_task(self._save_history_forever(), name="alerts-history"),
            loop.create_task(self._follow(ticks), name="alerts-ticks"),
            loop.create_task(changes, name="alerts-changes"),
            loop.create_task(self._store_forever(), name="alerts-store"),
        ]
        try:
            await asyncio.wait_for(self._listening.wait(), 3.0)
        except TimeoutError:
            log.warning("alert changes from other replicas are not arriving yet")

    async def _load_until_done(self) -> None:
        wait = 0.5
        while True:
            await asyncio.sleep(wait)
            try:
                await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                wait = min(wait * 2, LOAD_RETRY_MAX)
                log.warning("alerts not loaded yet; retrying", extra={"error": str(error)})
            else:
                log.info("alerts loaded", extra={"alerts": sum(1 for _ in self.index.rules())})
                return

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await cancel_and_wait(task)
        if tasks and self._leading():
            await self.save_history()  # for the replica that leads next

    # --- recent prices, across restarts --------------------------------------------------------

    async def save_history(self) -> None:
        """The index's recent prices, in the cache (a failure is logged: the next save comes)."""
        history = self.index.price_history()  # copied here, encoded beside the loop
        try:
            blob = await asyncio.to_thread(_encode_history, history)
            await self._cache.set(HISTORY_KEY, blob, COARSE_SPAN)
        except Exception as error:
            log.warning("recent prices not saved", extra={"error": str(error)})

    async def _load_history(self) -> None:
        try:
            blob = await self._cache.get(HISTORY_KEY)
            history = _decode_history(blob) if blob is not None else {}
        except Exception as error:  # the cache is away, or the blob is not ours: start empty
            log.warning("recent prices not loaded", extra={"error": str(error)})
            return
        restored = self.index.restore_price_history(history)
        if restored:
            log.info("recent prices loaded", extra={"symbols": restored})

    async def _save_history_forever(self) -> None:
        while True:
            await asyncio.sleep(self._history_every)
            if self._leading():
                await self.save_history()

    async def changed(self, alert_id: str) -> None:
        """An alert changed in the database: follow here at once, then tell the others."""
        await self._refresh(alert_id)
        await self._cache.publish(CHANNEL, alert_id.encode())

    async def reload(self) -> None:
        """Every active alert from the database. One the index knew keeps its place (it is
        not fresh: it fires on a crossing); one it did not know is fresh, unless it is a
        repeating alert that has fired: after a restart it would otherwise fire again at the
        first step for the crossing it already fired for (the price still where it was)."""
        async with self._db.reading() as session:
            stored = {rule.id: rule for rule in await AlertRepository(session).active()}
        for rule in self.index.rules():
            if rule.id not in stored:
                self.index.remove(rule.id)
        for rule in stored.values():
            if rule.id in self.index:
                self.index.settle(rule)
            else:
                self.index.put(rule, fresh=not (rule.repeat and rule.last_fired_at is not None))

    # --- ticks ---------------------------------------------------------------------------------

    async def _follow(self, ticks: TickStream) -> None:
        try:
            while (read := await ticks.batch()).quotes:
                leading = self._leading()
                if leading and not self._led:
                    await self._take_over()
                self._led = leading
                fired = self.index.evaluate(
                    ((q.symbol, q.price, q.time) for q in read.quotes), fire=leading
                )
                if fired:
                    self._firings.put_nowait(fired)
                self.batches += 1
        finally:
            await ticks.aclose()

    async def _take_over(self) -> None:
        try:
            await self.reload()
        except Exception:  # the database is away: evaluate with what the index holds
            log.exception("alerts not reloaded at taking the lead")

    async def _store_forever(self) -> None:
        while True:
            fired = await self._firings.get()
            try:
                await self._store(fired)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away: these firings are lost, say so
                log.exception("alert firings not stored", extra={"count": len(fired)})
                self.unstored += len(fired)
                await self._restore(fired)

    async def _restore(self, fired: Sequence[Firing]) -> None:
        """Undo in the index firings that were not stored: the alert comes back as it was
        before, fresh, so it fires at its next step if its condition still holds (a repeating
        one settled instead stayed past its threshold with no new crossing, never to fire)."""
        for firing in fired:
            self.index.put(firing.rule)

    async def _store(self, fired: Sequence[Firing]) -> None:
        kept: list[FiredRecord] = []
        async with self._db.transaction() as session:
            alerts, firings = AlertRepository(session), FiredAlertRepository(session)
            for firing in fired:
                if not await alerts.claim_firing(firing.rule, firing.at):
                    continue  # paused, deleted or fired already meanwhile
                record = _record(firing)
                await firings.add(record)
                kept.append(record)
        self.fired += len(kept)
        for record in kept:
            event = portfolio_pb2.StreamPortfolioEventsResponse(
                user_id=record.user_id, alert=fired_message(record)
            )
            await self._hub.publish(event)
        for record in kept:
            await self._cache.publish(CHANNEL, record.alert_id.encode())

    # --- changes -------------------------------------------------------------------------------

    async def _refresh(self, alert_id: str) -> None:
        async with self._db.reading() as session:
            rule = await AlertRepository(session).get(alert_id)
        if rule is None or not rule.active:
            self.index.remove(alert_id)
        elif alert_id in self.index:
            self.index.settle(rule)  # fired, or changed where it stands: keeps its place
        else:
            self.index.put(rule)

    async def _changes(self, live: asyncio.Event) -> AsyncGenerator[bytes, None]:
        """The ids announced on the channel, and this subscription's own probe once it comes
        back (live from then on); if the cache goes away, follow_forever subscribes again."""
        probe = PROBE + uuid.uuid4().hex.encode()
        probing = asyncio.get_running_loop().create_task(self._probe(probe, live))
        try:
            async for message in self._cache.subscribe(CHANNEL):
                if message == probe:
                    live.set()
                    yield message
                elif not message.startswith(PROBE):  # not another replica's probe
                    yield message
        finally:
            probing.cancel()

    async def _on_change(self, message: bytes) -> None:
        if not message.startswith(PROBE):
            await self._refresh(message.decode(errors="replace"))
        elif self._listening.is_set():
            await self.reload()  # subscribed again: notices may have been missed meanwhile
        else:
            self._listening.set()

    async def _probe(self, probe: bytes, live: asyncio.Event) -> None:
        """Publish the probe until it comes back: the subscription is live from then on."""
        while not live.is_set():
            await self._cache.publish(CHANNEL, probe)
            await asyncio.sleep(0.1)


def _encode_history(history: dict[str, list[tuple[float, int]]]) -> bytes:
    document = {"version": HISTORY_VERSION, "symbols": history}
    return zlib.compress(json.dumps(document, separators=(",", ":")).encode())


def _decode_history(blob: bytes) -> dict[str, list[tuple[float, int]]]:
    document = json.loads(zlib.decompress(blob))
    if document.get("version") != HISTORY_VERSION:
        return {}
    return {
        str(name): [(float(at), int(price)) for at, price in prices]
        for name, prices in document["symbols"].items()
    }


def _record(firing: Firing) -> FiredRecord:
    rule = firing.rule
    return FiredRecord(
        id=str(uuid.uuid4()),
        user_id=rule.user_id,
        alert_id=rule.id,
        symbol=rule.symbol,
        condition=rule.condition,
        threshold=rule.threshold,
        price=firing.price,
        fired_at=firing.at,
        read=False,
        message=firing_text(rule, firing.price, firing.change),
    )
