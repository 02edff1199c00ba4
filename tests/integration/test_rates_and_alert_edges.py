"""Exchange rates read with the real Alpha Vantage client against its fake, and alerts through
the real server and the evaluator, on SQLite and PostgreSQL: a day's rate is its close, not the
intraday rate seen that day nor the day before's kept for good; blank ids mark no firing read;
a repeating alert whose firing was not stored fires at the next step (each failed before;
found by a review)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.alert_index import AlertRule, Condition
from services.portfolio.alert_watch import AlertWatch
from services.portfolio.alpha_vantage import AlphaVantage
from services.portfolio.config import load_market_config
from services.portfolio.currencies import FxRate
from services.portfolio.events import EventHub
from services.portfolio.exchange import Exchange
from services.portfolio.market_data import Quote, TickFanout
from services.portfolio.watch_store import AlertRepository, FiredAlertRepository, FiredRecord
from services.runtime.db import Database
from services.runtime.local_cache import InProcessCache
from tests.fakes.alpha_vantage import API_KEY, FakeAlphaVantage
from tests.integration.portfolio_harness import (
    PortfolioService,
)
from tests.waiting import until

D = Decimal


@contextlib.asynccontextmanager
async def provider(fake: FakeAlphaVantage, now: datetime) -> AsyncIterator[AlphaVantage]:
    """A fresh Alpha Vantage client (its own cache: a new process, or the next day)."""
    config = load_market_config(
        {
            "USE_MOCK_PRICES": "false",
            "ALPHA_VANTAGE_API_KEY": API_KEY,
            "ALPHA_VANTAGE_URL": fake.url,
        }
    )
    source = AlphaVantage(config, InProcessCache(), clock=lambda: now)
    try:
        yield source
    finally:
        await source.close()


async def test_a_days_rate_read_the_next_day_is_its_close_not_the_intraday_rate_seen_that_day(
    fake: FakeAlphaVantage,
    portfolio_database_url: str,
) -> None:
    """GetPerformance (reports.py -> Exchange.rates_on(..., end=today)) during Tuesday stores
    FX_DAILY's bar of Tuesday, which is the rate *so far*. On Wednesday, Tuesday's rate (a
    trade dated Tuesday, GetFxRate?date=Tuesday) must be Tuesday's close."""
    tuesday = date(2024, 1, 9)
    during_tuesday = datetime(2024, 1, 9, 14, 0, tzinfo=UTC)
    on_wednesday = datetime(2024, 1, 10, 10, 0, tzinfo=UTC)
    db = Database(portfolio_database_url)
    try:
        fake.fx_closes["EURUSD"]["2024-01-09"] = "1.0900"  # Tuesday, 14:00: the rate so far
        async with provider(fake, during_tuesday) as av:
            exchange = Exchange(db, av, clock=lambda: during_tuesday)
            await exchange.rates_on({"EUR"}, "USD", date(2024, 1, 2), tuesday)
        # Tuesday closes at 1.0990; Wednesday trades on.
        fake.fx_closes["EURUSD"]["2024-01-09"] = "1.0990"
        fake.fx_closes["EURUSD"]["2024-01-10"] = "1.1000"
        async with provider(fake, on_wednesday) as av:
            exchange = Exchange(db, av, clock=lambda: on_wednesday)
            closes = await av.fx_daily("EUR", "USD", tuesday, tuesday)
            assert closes == {tuesday: D("1.0990")}  # what the provider says Tuesday closed at
            found = await exchange.rate("EUR", "USD", tuesday)
        assert (found.day, found.rate) == (tuesday, D("1.0990"))
    finally:
        await db.close()


# --- fired alerts: marking read -----------------------------------------------------------------


async def _fired(db: Database, user_id: str, count: int) -> list[str]:
    """`count` unread firings of the user's (as the evaluator stores them)."""
    ids = []
    async with db.transaction() as session:
        for n in range(count):
            record = FiredRecord(
                id=str(uuid.uuid4()),
                user_id=user_id,
                alert_id=str(uuid.uuid4()),
                symbol="AAPL",
                condition=Condition.ABOVE,
                threshold=D("190"),
                price=D("190.12"),
                fired_at=datetime(2026, 12, 7, 14, 30, tzinfo=UTC) + timedelta(seconds=n),
                read=False,
                message="AAPL rose above 190.00 (190.12)",
            )
            await FiredAlertRepository(session).add(record)
            ids.append(record.id)
    return ids


async def test_marking_a_blank_id_read_does_not_mark_every_firing_read(
    portfolio_service: PortfolioService,
) -> None:
    """`ids` empty means "all of them"; `ids: [""]` (a client whose selection lost its id, or
    ids: [" "]) names one firing that does not exist: nothing is marked. The service drops the
    blank ids first and then takes the empty list for "all": every firing is marked read."""
    s = portfolio_service
    who, user_id = await s.account()
    db = s.database()
    try:
        await _fired(db, user_id, 3)
    finally:
        await db.close()
    marked = await s.stub.MarkFiredAlertsRead(
        pb.MarkFiredAlertsReadRequest(ids=[" "]), metadata=who
    )
    after = await s.stub.ListFiredAlerts(pb.ListFiredAlertsRequest(), metadata=who)
    assert (marked.marked, after.unread) == (0, 3)


# --- the evaluator: a firing the database could not store ---------------------------------------


T0 = datetime(2026, 12, 7, 14, 30, tzinfo=UTC)


async def test_a_repeating_alert_whose_firing_was_not_stored_fires_at_the_next_step(
    portfolio_database_url: str,
) -> None:
    """test_alert_watch.py: "a firing the database could not store is undone in the index, so
    the alert fires at the next step instead of being lost" -- true of a one-off alert only. A
    repeating alert's refused firing is lost: it is not made fresh again, the price stays above
    its threshold (no new crossing), and nothing is ever stored or sent for this crossing."""
    db = Database(portfolio_database_url)
    market = TickFanout()
    watch = AlertWatch(db, market.subscribe, EventHub(None), InProcessCache(), leading=lambda: True)
    rule = AlertRule(
        "a-rep",
        "u-1",
        "AAPL",
        Condition.ABOVE,
        D("101"),
        repeat=True,
        cooldown_seconds=60,
        created_at=T0,
    )
    try:
        async with db.transaction() as session:
            await AlertRepository(session).add(rule)
        await watch.start()

        async def step(price: str, second: int) -> None:
            batches = watch.batches
            quote = Quote("AAPL", D(price), D(0), D(0), T0 + timedelta(seconds=second), "mock")
            market.publish([quote])
            await until(lambda: watch.batches > batches, f"step {second} evaluated")

        await step("100", 1)
        async with db.transaction() as session:
            await session.execute(text("ALTER TABLE fired_alerts RENAME TO fired_away"))
        await step("102", 2)  # crosses: fires, but the database refuses it
        await until(lambda: watch.unstored == 1, "the firing refused")
        async with db.transaction() as session:
            await session.execute(text("ALTER TABLE fired_away RENAME TO fired_alerts"))
        await step("102.5", 3)  # still above: the one-off alert would fire here
        await step("102.6", 120)  # and well past any cool-down
        await asyncio.sleep(0.2)
        assert watch.fired == 1
    finally:
        await watch.stop()
        await db.close()


# --- a day's rate asked before the source had that day's close ----------------------------------


class Rates:
    """A rate source (as mock_market / alpha_vantage answer) whose daily closes the test sets."""

    source = "test"

    def __init__(self, closes: dict[date, Decimal]) -> None:
        self.closes = closes

    async def fx_rate(self, base: str, quote: str) -> FxRate:
        day = max(self.closes)
        return FxRate(base, quote, self.closes[day], day, self.source)

    async def fx_daily(self, base: str, quote: str, start: date, end: date) -> dict[date, Decimal]:
        return {d: c for d, c in self.closes.items() if start <= d <= end}


async def test_a_days_rate_asked_before_its_close_was_published_is_not_kept_for_good(
    portfolio_database_url: str,
) -> None:
    """Wednesday 00:05 UTC: Tuesday's close is not published yet, so Tuesday's rate is Monday's
    close (said as day=Monday: fine). Once Tuesday's close is published, Tuesday's rate is
    Tuesday's close -- on a fresh replica it is; on this one Exchange._past keeps the fallback
    answer for the life of the process, and every trade dated Tuesday is booked at Monday's
    rate here and at Tuesday's on the other replicas."""
    monday, tuesday = date(2024, 1, 8), date(2024, 1, 9)
    wednesday = datetime(2024, 1, 10, 0, 5, tzinfo=UTC)
    source = Rates({date(2024, 1, 5): D("1.0942"), monday: D("1.0950")})
    db = Database(portfolio_database_url)
    try:
        exchange = Exchange(db, source, clock=lambda: wednesday)  # type: ignore[arg-type]
        early = await exchange.rate("EUR", "USD", tuesday)
        assert (early.day, early.rate) == (monday, D("1.0950"))
        source.closes[tuesday] = D("1.0990")  # published a little later
        fresh = Exchange(db, source, clock=lambda: wednesday)  # type: ignore[arg-type]
        assert (await fresh.rate("EUR", "USD", tuesday)).rate == D("1.0990")
        later = await exchange.rate("EUR", "USD", tuesday)
        assert (later.day, later.rate) == (tuesday, D("1.0990"))
    finally:
        await db.close()
