"""The alert evaluator on a real database (SQLite and PostgreSQL) and hand-made market steps:
only a leading replica fires; a firing the database could not store is undone in the index, so
the alert fires at the next step instead of being lost; a change announced by another replica
reaches this one's index."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from services.portfolio.alert_index import AlertRule, Condition
from services.portfolio.alert_watch import CHANNEL, LOAD_RETRY_MAX, AlertWatch
from services.portfolio.events import EventHub
from services.portfolio.market_data import Quote, TickFanout
from services.portfolio.watch_store import AlertRepository, FiredAlertRepository
from services.runtime.db import Database
from services.runtime.local_cache import InProcessCache
from tests.waiting import WAIT, until, until_async

T0 = datetime(2026, 12, 7, 14, 30, tzinfo=UTC)


@dataclass
class Rig:
    db: Database
    market: TickFanout
    cache: InProcessCache
    watch: AlertWatch
    leading: list[bool]

    def step(self, price: str, second: int) -> None:
        quote = Quote(
            "AAPL", Decimal(price), Decimal(0), Decimal(0), T0 + timedelta(seconds=second), "mock"
        )
        self.market.publish([quote])

    async def fired(self) -> list[str]:
        async with self.db.reading() as session:
            found, _ = await FiredAlertRepository(session).page(
                "u-1", unread=False, offset=0, limit=100
            )
        return [f.alert_id for f in found]


def evaluated_past(rig: Rig, seen: int) -> bool:
    """The watch has evaluated a batch of ticks since it had evaluated `seen`."""
    return rig.watch.batches > seen


@pytest.fixture
async def rig(portfolio_database_url: str) -> AsyncIterator[Rig]:
    db = Database(portfolio_database_url)
    market, cache = TickFanout(), InProcessCache()
    leading = [False]
    watch = AlertWatch(db, market.subscribe, EventHub(None), cache, leading=lambda: leading[0])
    try:
        yield Rig(db, market, cache, watch, leading)
    finally:
        await watch.stop()
        await db.close()


async def add_alert(db: Database, alert_id: str, price: str) -> None:
    rule = AlertRule(alert_id, "u-1", "AAPL", Condition.ABOVE, Decimal(price), created_at=T0)
    async with db.transaction() as session:
        await AlertRepository(session).add(rule)


async def test_only_the_leader_fires_and_an_unstored_firing_fires_again(rig: Rig) -> None:
    await add_alert(rig.db, "a-1", "101")
    await rig.watch.start()
    rig.step("100", 1)
    rig.step("102", 2)  # crossed, but this replica does not lead
    rig.step("100", 3)
    await until(lambda: rig.market.seq == 3, "three steps")
    assert await rig.fired() == []

    rig.leading[0] = True
    # The database refuses the firing (its table is away): the alert is not lost.
    async with rig.db.transaction() as session:
        await session.execute(text("ALTER TABLE fired_alerts RENAME TO fired_away"))
    rig.step("101.5", 4)
    await until(lambda: rig.watch.unstored == 1, "the firing refused")
    assert "a-1" in rig.watch.index
    async with rig.db.transaction() as session:
        await session.execute(text("ALTER TABLE fired_away RENAME TO fired_alerts"))
    rig.step("101.6", 5)  # still above: the alert came back fresh, so it fires now
    await until(lambda: rig.watch.fired == 1, "the firing stored")
    assert await rig.fired() == ["a-1"]
    async with rig.db.reading() as session:
        alert = await AlertRepository(session).get("a-1")
    assert alert is not None and alert.active is False
    assert alert.last_fired_at == T0 + timedelta(seconds=5)


async def test_a_repeating_alert_that_fired_does_not_fire_again_for_the_same_crossing_at_a_restart(
    rig: Rig,
) -> None:
    # Fired an hour before this process started; its cool-down is long over.
    rule = AlertRule(
        "a-r",
        "u-1",
        "AAPL",
        Condition.ABOVE,
        Decimal("101"),
        repeat=True,
        cooldown_seconds=60,
        created_at=T0 - timedelta(hours=2),
        last_fired_at=T0 - timedelta(hours=1),
    )
    async with rig.db.transaction() as session:
        await AlertRepository(session).add(rule)
    await add_alert(rig.db, "a-new", "101")  # never fired: fires at the first step
    rig.leading[0] = True
    await rig.watch.start()
    for price, second in (("102", 1), ("100", 2), ("101.5", 3)):
        # 102: still above, where a-r's last firing left it (not a crossing); 101.5 crosses.
        batches = rig.watch.batches
        rig.step(price, second)
        await until(functools.partial(evaluated_past, rig, batches), f"step {second} evaluated")
    await until(lambda: rig.watch.fired == 2, "two firings stored")
    async with rig.db.reading() as session:
        found, _ = await FiredAlertRepository(session).page("u-1", unread=False, offset=0, limit=9)
    fired = {(f.alert_id, f.fired_at) for f in found}
    assert fired == {("a-new", T0 + timedelta(seconds=1)), ("a-r", T0 + timedelta(seconds=3))}


async def test_a_change_announced_by_another_replica_reaches_the_index(rig: Rig) -> None:
    await rig.watch.start()
    await add_alert(rig.db, "a-2", "150")
    assert "a-2" not in rig.watch.index
    # What the replica that created it announces, on the channel every replica follows.
    await rig.cache.publish(CHANNEL, b"a-2")
    await until(lambda: "a-2" in rig.watch.index, "the new alert in the index")
    async with rig.db.transaction() as session:
        await AlertRepository(session).set_active("a-2", "u-1", False)
    await rig.cache.publish(CHANNEL, b"a-2")
    await until(lambda: "a-2" not in rig.watch.index, "the paused alert out of the index")


class LosesItsSubscription(InProcessCache):
    """A cache whose first subscription fails once it is live (a lost Redis connection); the
    next one waits for `back` to be set."""

    def __init__(self) -> None:
        super().__init__()
        self.subscriptions = 0
        self.lost = asyncio.Event()
        self.back = asyncio.Event()

    async def subscribe(self, channel: str) -> AsyncIterator[bytes]:
        self.subscriptions += 1
        if self.subscriptions > 1:
            await self.back.wait()
        async for message in super().subscribe(channel):
            yield message
            if self.subscriptions == 1:
                self.lost.set()
                raise ConnectionError("connection to the cache lost")


async def test_a_replica_whose_subscription_was_lost_subscribes_again_and_reloads(
    rig: Rig,
) -> None:
    cache = LosesItsSubscription()
    watch = AlertWatch(rig.db, rig.market.subscribe, EventHub(None), cache, leading=lambda: False)
    try:
        await watch.start()
        await asyncio.wait_for(cache.lost.wait(), WAIT)
        # Announced while this replica was not subscribed: the notice is missed.
        await add_alert(rig.db, "a-missed", "150")
        await cache.publish(CHANNEL, b"a-missed")
        assert "a-missed" not in watch.index
        cache.back.set()
        await until(lambda: "a-missed" in watch.index, "the reload after subscribing again")
        # And the new subscription carries the next notices.
        async with rig.db.transaction() as session:
            await AlertRepository(session).set_active("a-missed", "u-1", False)
        await cache.publish(CHANNEL, b"a-missed")
        await until(lambda: "a-missed" not in watch.index, "the paused alert out of the index")
        assert cache.subscriptions == 2
    finally:
        await watch.stop()


async def test_a_service_started_before_its_tables_exist_loads_the_alerts_once_they_do(
    tmp_path: object,
) -> None:
    from pathlib import Path

    from services.runtime.migrations import upgrade

    url = f"sqlite+aiosqlite:///{Path(str(tmp_path)) / 'late.db'}"
    db = Database(url)
    market = TickFanout()
    watch = AlertWatch(db, market.subscribe, EventHub(None), InProcessCache(), leading=lambda: True)
    try:
        await watch.start()  # no tables yet: starts anyway
        assert list(watch.index.rules()) == []
        await asyncio.to_thread(upgrade, "portfolio", url)
        await add_alert(db, "a-late", "101")
        # The load is retried with a backoff that grows to LOAD_RETRY_MAX while the tables are
        # missing: on a loaded machine the migrations take long enough for the next try to come
        # up to that long after them (ci-1 here: past a 15 s wait).
        await until(
            lambda: "a-late" in watch.index, "the alerts loaded", within=LOAD_RETRY_MAX + WAIT
        )
    finally:
        await watch.stop()
        await db.close()


async def test_a_restarted_replica_measures_percent_moves_from_the_prices_saved_before(
    rig: Rig,
) -> None:
    rig.leading[0] = True
    await rig.watch.start()
    for second in range(0, 3601, 300):  # an hour at 100, one price every five minutes
        batches = rig.watch.batches
        rig.step("100", second)
        await until(functools.partial(evaluated_past, rig, batches), f"second {second} evaluated")
    await rig.watch.stop()  # the leader saves the recent prices as it stops

    # Restarted (a deploy): a new replica, the same cache and database, and an alert on a fall
    # of 5% within an hour. Its first price is 6% under the one an hour before it.
    rule = AlertRule(
        "a-fall",
        "u-1",
        "AAPL",
        Condition.PERCENT_CHANGE,
        Decimal("-5"),
        window_seconds=3600,
        created_at=T0,
    )
    async with rig.db.transaction() as session:
        await AlertRepository(session).add(rule)
    market = TickFanout()
    restarted = AlertWatch(
        rig.db, market.subscribe, EventHub(None), rig.cache, leading=lambda: True
    )
    await restarted.start()
    try:
        market.publish(
            [
                Quote(
                    "AAPL",
                    Decimal("94"),
                    Decimal(0),
                    Decimal(0),
                    T0 + timedelta(seconds=3660),
                    "mock",
                )
            ]
        )
        await until(lambda: restarted.fired == 1, "the fall measured against the saved prices")
        async with rig.db.reading() as session:
            (firing,), _ = await FiredAlertRepository(session).page(
                "u-1", unread=False, offset=0, limit=9
            )
        assert (firing.alert_id, firing.price) == ("a-fall", Decimal("94"))
        assert "-6" in firing.message
    finally:
        await restarted.stop()


async def test_an_alert_crossed_by_one_step_fires_even_when_the_next_step_comes_first(
    rig: Rig,
) -> None:
    # Alerts are evaluated on every step: a crossing that the next step undid, both published
    # before the watch read either, still fires (a latest-only stream skipped it).
    await add_alert(rig.db, "a-1", "101")
    rig.leading[0] = True
    await rig.watch.start()
    rig.step("100", 1)
    await until(lambda: rig.watch.batches == 1, "the first step")
    rig.step("102", 2)  # crosses 101: fires here
    rig.step("100", 3)  # back below, published before the watch read the step before
    await until(lambda: rig.watch.batches == 2, "the next read")

    async def stored() -> bool:
        return bool(await rig.fired())

    await until_async(stored, "the firing stored")
    assert await rig.fired() == ["a-1"]


async def test_an_alert_added_while_the_watch_is_behind_never_fires_at_an_earlier_price(
    rig: Rig,
) -> None:
    # Two steps wait unread (the loop was busy) when an alert is added (what
    # AlertWatch._refresh does once its read returns): it must not fire at 102, a price gone
    # before it existed; the market is at 100, below its threshold.
    rig.leading[0] = True
    await rig.watch.start()
    rig.step("100", 1)
    await until(lambda: rig.watch.batches == 1, "the first step")
    rig.step("102", 2)
    rig.step("100", 3)
    rule = AlertRule(
        "a-late",
        "u-1",
        "AAPL",
        Condition.ABOVE,
        Decimal("101"),
        created_at=T0 + timedelta(seconds=4),
    )
    rig.watch.index.put(rule)
    await until(lambda: rig.watch.batches == 2, "the next read")
    assert "a-late" in rig.watch.index  # not fired
