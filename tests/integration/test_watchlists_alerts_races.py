"""Portfolios, watchlists and alerts under concurrent writers, through the real use-case classes
on SQLite and PostgreSQL: the per-user caps (100 portfolios, 50 watchlists, 200 active alerts)
hold against racing creates and resumes (on PostgreSQL every racer counted the same rows and
all got in), and the stamps of one list's changes rise in the order they commit whatever each
replica's clock says (sockets drop a change older than the one they hold, so a later edit
stamped earlier was never followed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from services.portfolio.alert_index import Condition
from services.portfolio.alerts import MAX_ACTIVE_ALERTS, AlertDraft, Alerts
from services.portfolio.events import EventHub
from services.portfolio.mock_market import MockMarket
from services.portfolio.portfolios import MAX_PORTFOLIOS, PortfolioDraft, Portfolios
from services.portfolio.prices import Prices
from services.portfolio.repository import PortfolioRepository
from services.portfolio.watch_store import AlertRepository, WatchlistRepository
from services.portfolio.watchlists import MAX_WATCHLISTS, Watchlists
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import FailedPrecondition

USER = "user-1"
RACERS = 8
DRAFT = AlertDraft(symbol="AAPL", condition=Condition.ABOVE, price="500")


async def _warm(database: Database) -> None:
    """RACERS pooled connections open, as a busy service has them (a cold pool hands out one
    connection at a time while the others connect: the race would not be run)."""

    async def hold() -> None:
        async with database.reading() as session:
            await session.execute(text("SELECT 1"))
            await asyncio.sleep(0.05)

    await asyncio.gather(*(hold() for _ in range(RACERS)))


async def _nothing(_alert_id: str) -> None:
    return None


@pytest.fixture
async def market() -> AsyncIterator[MockMarket]:
    simulated = MockMarket(seed=7, interval=3600)
    try:
        yield simulated
    finally:
        await simulated.close()


async def test_racing_watchlist_creates_stop_at_the_cap(
    portfolio_db: Database, market: MockMarket
) -> None:
    lists = Watchlists(portfolio_db, market, Prices(portfolio_db, market))
    for i in range(MAX_WATCHLISTS - 1):
        await lists.create(USER, f"list {i}", ["AAPL"])
    await _warm(portfolio_db)
    results = await asyncio.gather(
        *(lists.create(USER, f"racer {i}", ["AAPL"]) for i in range(RACERS)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, FailedPrecondition)]
    assert {r.reason for r in refused} == {"TOO_MANY_WATCHLISTS"}
    assert len(refused) == RACERS - 1
    async with portfolio_db.reading() as session:
        assert await WatchlistRepository(session).count(USER) == MAX_WATCHLISTS


async def test_racing_portfolio_creates_stop_at_the_cap(
    portfolio_db: Database, market: MockMarket
) -> None:
    # Each portfolio holds up to 100 open orders the matcher checks at every tick: without a
    # cap, one account could make every tick's work unbounded.
    made = Portfolios(portfolio_db, Prices(portfolio_db, market), EventHub(None))
    for i in range(MAX_PORTFOLIOS - 1):
        await made.create(USER, PortfolioDraft(name=f"p{i}"))
    await _warm(portfolio_db)
    results = await asyncio.gather(
        *(made.create(USER, PortfolioDraft(name=f"racer {i}")) for i in range(RACERS)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, FailedPrecondition)]
    assert [r.reason for r in refused] == ["TOO_MANY_PORTFOLIOS"] * (RACERS - 1)
    assert "at most 100 portfolios" in refused[0].message
    async with portfolio_db.reading() as session:
        assert await PortfolioRepository(session).count(USER) == MAX_PORTFOLIOS
    other = await made.create("user-2", PortfolioDraft(name="theirs"))  # the cap is per user
    assert other.portfolio.user_id == "user-2"


async def test_racing_alert_creates_and_resumes_stop_at_the_cap(
    portfolio_db: Database, market: MockMarket
) -> None:
    alerts = Alerts(portfolio_db, market, _nothing)
    paused = []
    for _ in range(RACERS):
        rule = await alerts.create(USER, DRAFT)
        await alerts.set_active(USER, rule.id, False)
        paused.append(rule.id)
    for _ in range(MAX_ACTIVE_ALERTS - 2):
        await alerts.create(USER, DRAFT)
    await _warm(portfolio_db)
    created = await asyncio.gather(
        *(alerts.create(USER, DRAFT) for _ in range(RACERS)), return_exceptions=True
    )
    assert sum(isinstance(r, FailedPrecondition) for r in created) == RACERS - 2  # room for 2
    made = [r for r in created if not isinstance(r, BaseException)]
    await alerts.delete(USER, made[0].id)  # room for one more
    resumed = await asyncio.gather(
        *(alerts.set_active(USER, alert_id, True) for alert_id in paused), return_exceptions=True
    )
    assert sum(isinstance(r, FailedPrecondition) for r in resumed) == RACERS - 1
    async with portfolio_db.reading() as session:
        assert await AlertRepository(session).count_active(USER) == MAX_ACTIVE_ALERTS


async def test_one_alert_resumed_twice_at_once_at_the_cap_is_active_for_both(
    portfolio_db: Database, market: MockMarket
) -> None:
    # A double click on "resume" with room for that one alert: the second read the alert as
    # paused before the first's resume committed, counted it, and was refused TOO_MANY_ALERTS
    # (on PostgreSQL) although the alert it asked for was active.
    alerts = Alerts(portfolio_db, market, _nothing)
    rule = await alerts.create(USER, DRAFT)
    await alerts.set_active(USER, rule.id, False)
    for _ in range(MAX_ACTIVE_ALERTS - 1):
        await alerts.create(USER, DRAFT)
    await _warm(portfolio_db)
    resumed = await asyncio.gather(
        *(alerts.set_active(USER, rule.id, True) for _ in range(RACERS)), return_exceptions=True
    )
    assert [(r.id, r.active) for r in resumed if isinstance(r, type(rule))] == [
        (rule.id, True)
    ] * RACERS
    async with portfolio_db.reading() as session:
        assert await AlertRepository(session).count_active(USER) == MAX_ACTIVE_ALERTS


async def test_a_later_edit_from_a_replica_whose_clock_is_behind_is_stamped_later(
    portfolio_db: Database, market: MockMarket
) -> None:
    hub = EventHub(None)
    events = hub.subscribe()
    prices = Prices(portfolio_db, market)

    def ahead() -> datetime:
        return utc_now() + timedelta(milliseconds=50)

    replica_a = Watchlists(portfolio_db, market, prices, events=hub, clock=ahead)
    replica_b = Watchlists(portfolio_db, market, prices, events=hub)
    created = await replica_a.create(USER, "Tech", ["AAPL"])
    list_id = created.record.id
    await replica_a.update(USER, list_id, "Tech", ["MSFT"])
    await asyncio.sleep(0.01)
    await replica_b.update(USER, list_id, "Tech", ["NVDA"])  # 10 ms later, by a slower clock
    await replica_b.delete(USER, list_id)

    changes = [(await asyncio.wait_for(anext(events), 2)).watchlist for _ in range(3)]
    stamps = [(c.updated_at.seconds, c.updated_at.nanos) for c in changes]
    assert [tuple(c.symbols) for c in changes] == [("MSFT",), ("NVDA",), ()]
    assert [c.deleted for c in changes] == [False, False, True]
    assert stamps == sorted(set(stamps))  # each later than the one before
