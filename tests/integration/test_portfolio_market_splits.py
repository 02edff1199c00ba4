"""The market's splits recorded in the portfolios that held the stock (services/portfolio/
market_splits.py), on SQLite and PostgreSQL: a holding before the effective date is split once
(shares, cost per share, cash in lieu of a fraction), tracking and paper alike, whatever how
many rounds or appliers try, concurrently too; a later buyer, a split recorded by hand, a split
its owner deleted and a history the split would break are left alone; through the real server,
the owner's stream hears the new value and the split reads as one CreateSplit recorded; a
portfolio that sold the stock after the split, with nobody holding it now, is split too; a
round decodes only the books stored anew since the last; and from Alpha Vantage's SPLITS
through the fake provider, polled for the symbols held in the days a round looks at only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio import orm
from services.portfolio.alpha_vantage import COOLDOWN_KEY, AlphaVantage
from services.portfolio.config import load_market_config
from services.portfolio.domain import Book, Side, Trade
from services.portfolio.events import Event, EventHub, Subscription
from services.portfolio.market_splits import FULL_EVERY, SplitApplier
from services.portfolio.mock_market import MockMarket, SplitSchedule
from services.portfolio.order_desk import Orders
from services.portfolio.prices import Prices
from services.portfolio.records import Portfolio, PortfolioKind
from services.portfolio.repository import (
    PortfolioRepository,
    SplitRepository,
    TradeRepository,
)
from services.portfolio.split_calendar import SplitRatio
from services.portfolio.splits import SplitDraft, Splits
from services.portfolio.trades import Trades
from services.runtime.cache import Cache, create_cache
from services.runtime.db import Database
from tests.fakes.alpha_vantage import API_KEY, FakeAlphaVantage
from tests.integration.portfolio_harness import (
    StartPortfolio,
    collecting,
    realized,
    splits_of,
)
from tests.utc_days import at, noon, one_utc_day, utc_today
from tests.waiting import until, until_async

D = Decimal
NOW = datetime(2024, 6, 12, 12, tzinfo=UTC)
SPLIT_DAY = date(2024, 6, 10)  # a Monday
SCHEDULE = {"NVDA": {SPLIT_DAY: (10, 1)}, "INTC": {SPLIT_DAY: (1, 3)}}


@dataclass
class Desk:
    """The portfolio service's parts an applier works with, over one database and market."""

    db: Database
    market: object
    trades: Trades
    splits: Splits
    prices: Prices
    hub: EventHub
    clock: Callable[[], datetime]

    def applier(self, market: object | None = None) -> SplitApplier:
        return SplitApplier(self.db, market or self.market, self.splits, clock=self.clock)

    async def portfolio(self, pid: str, kind: PortfolioKind, user_id: str = "u-1") -> None:
        async with self.db.transaction() as session:
            owned = Portfolio(pid, user_id, pid, "", "USD", kind, NOW, NOW)
            await PortfolioRepository(session).add(owned)

    async def trade(
        self, pid: str, side: Side, symbol: str, quantity: str, price: str, day: date
    ) -> None:
        trade = Trade(side, symbol, D(quantity), D(price), D(0), at(day))
        await self.trades.append("u-1", pid, [trade])

    async def book(self, pid: str) -> Book:
        async with self.db.snapshot() as session:
            trades = [r.trade for r in await TradeRepository(session).of(pid)]
            splits = [r.split for r in await SplitRepository(session).of(pid)]
        return Book.replay(trades, splits=splits, policy=PortfolioKind.TRACKING.policy)

    async def notes(self) -> int:
        async with self.db.reading() as session:
            query = select(func.count()).select_from(orm.market_split_notes)
            return int((await session.execute(query)).scalar_one())


@contextlib.asynccontextmanager
async def desk(
    url: str,
    *,
    schedule: dict[str, dict[date, SplitRatio]] | None = None,
    clock: Callable[[], datetime] = lambda: NOW,
    hub: EventHub | None = None,
) -> AsyncIterator[Desk]:
    db = Database(url)
    market = MockMarket(
        seed=7, clock=clock, splits=SplitSchedule(fixed=SCHEDULE if schedule is None else schedule)
    )
    hub = hub or EventHub(None)
    prices = Prices(db, market, clock=clock)
    trades = Trades(db, market, prices, hub, clock=clock)
    splits = Splits(db, prices, hub, orders=Orders(db, trades, hub, clock=clock), clock=clock)
    try:
        yield Desk(db, market, trades, splits, prices, hub, clock)
    finally:
        await db.close()


async def take(subscription: Subscription, count: int) -> list[Event]:
    """The next `count` events (published already: they are waiting)."""
    return [await asyncio.wait_for(anext(subscription), 5) for _ in range(count)]


async def test_holders_before_the_effective_date_are_split_once_and_later_buyers_not(
    portfolio_database_url: str,
) -> None:
    async with desk(portfolio_database_url) as d:
        listening = d.hub.subscribe()
        for pid, kind in (
            ("paper", PortfolioKind.PAPER),
            ("tracking", PortfolioKind.TRACKING),
            ("late", PortfolioKind.TRACKING),
        ):
            await d.portfolio(pid, kind)
        await d.trade("paper", Side.DEPOSIT, "", "20000", "1", date(2024, 6, 3))
        await d.trade("paper", Side.BUY, "NVDA", "10", "1200", date(2024, 6, 3))
        await d.trade("tracking", Side.BUY, "NVDA", "5", "1000", date(2024, 5, 2))
        await d.trade("tracking", Side.BUY, "NVDA", "2", "1100", date(2024, 6, 7))
        await d.trade("tracking", Side.BUY, "INTC", "1.00000001", "90", date(2024, 6, 3))
        # Bought on the effective date, at the split price: not a holder when it took effect.
        await d.trade("late", Side.BUY, "NVDA", "30", "121", SPLIT_DAY)

        first, second = await asyncio.gather(d.applier().apply_due(), d.applier().apply_due())
        assert first + second == 3
        assert await d.applier().apply_due() == 0
        assert await d.notes() == 3

        paper = await d.book("paper")
        (lot,) = paper.lots("NVDA")
        assert (paper.quantity("NVDA"), lot.unit_cost) == (D(100), D(120))
        [nvda] = await d.splits.find("u-1", "paper", "NVDA")
        assert (nvda.quantity_before, nvda.quantity_after, nvda.cash_in_lieu) == (
            D(10),
            D(100),
            D(0),
        )
        assert (nvda.recorded.split.day, nvda.recorded.split.ratio, nvda.recorded.split.of) == (
            SPLIT_DAY,
            D(10),
            1,
        )

        tracking = await d.book("tracking")
        assert tracking.quantity("NVDA") == D(70)
        assert [lot.unit_cost for lot in tracking.lots("NVDA")] == [D(100), D(110)]
        intc, nvda_tracked = await d.splits.find("u-1", "tracking")
        assert (intc.recorded.split.symbol, nvda_tracked.recorded.split.symbol) == ("INTC", "NVDA")
        # 1.00000001 shares 1-for-3: 0.33333333 kept, the rest (0.0000000033...) paid at 270
        # (the last trade's 90, split), as a split recorded by hand pays it.
        assert (intc.quantity_before, intc.quantity_after) == (D("1.00000001"), D("0.33333333"))
        assert intc.cash_in_lieu.quantize(D("0.00000001")) == D("0.00000180")
        # A tracking portfolio's buys were paid with money brought in: its cash is the lieu.
        assert tracking.cash.quantize(D("0.00000001")) == D("0.00000180")

        late = await d.book("late")
        assert late.quantity("NVDA") == D(30)
        assert await d.splits.find("u-1", "late") == []

        # Each recorded split told the owner the portfolio's new value, as a hand-recorded one.
        heard = await take(listening, 3)
        assert sorted((e.user_id, e.portfolio_value.portfolio_id) for e in heard) == [
            ("u-1", "paper"),
            ("u-1", "tracking"),
            ("u-1", "tracking"),
        ]


async def test_a_split_recorded_by_hand_near_its_day_or_deleted_is_not_recorded_again(
    portfolio_database_url: str,
) -> None:
    async with desk(portfolio_database_url) as d:
        for pid in ("by-hand", "a-day-off", "deleted"):
            await d.portfolio(pid, PortfolioKind.TRACKING)
            await d.trade(pid, Side.BUY, "NVDA", "4", "1000", date(2024, 6, 3))
        mine = await d.splits.create("u-1", "by-hand", SplitDraft("NVDA", "2024-06-10", 10, 1))
        # Recorded by hand on the Friday before, as announced: the same split, not another.
        early = await d.splits.create("u-1", "a-day-off", SplitDraft("NVDA", "2024-06-07", 10, 1))

        assert await d.applier().apply_due() == 1  # "deleted" only
        for pid, hand in (("by-hand", mine), ("a-day-off", early)):
            assert [e.recorded.id for e in await d.splits.find("u-1", pid)] == [hand.recorded.id]
            assert (await d.book(pid)).quantity("NVDA") == D(40)

        [market] = await d.splits.find("u-1", "deleted")
        await d.splits.delete("u-1", "deleted", market.recorded.id)
        assert (await d.book("deleted")).quantity("NVDA") == D(4)
        # Deleted is deleted: neither this round nor a second applier's records it again.
        assert await d.applier().apply_due() == 0
        assert list(await asyncio.gather(d.applier().apply_due(), d.applier().apply_due())) == [
            0,
            0,
        ]
        assert await d.splits.find("u-1", "deleted") == []
        assert (await d.book("deleted")).quantity("NVDA") == D(4)


class OwnerRecordsFirst(Splits):
    """The owner records the announced split by hand (on the Friday before) just as the
    applier, which read the portfolio's splits before, records the market's."""

    async def create(self, user_id: str, portfolio_id: str, draft: SplitDraft, **more: Any) -> Any:
        if draft.date == SPLIT_DAY.isoformat():
            await super().create(user_id, portfolio_id, SplitDraft("NVDA", "2024-06-07", 10, 1))
        return await super().create(user_id, portfolio_id, draft, **more)


async def test_a_split_the_owner_records_a_day_off_during_the_round_is_not_recorded_twice(
    portfolio_database_url: str,
) -> None:
    async with desk(portfolio_database_url) as d:
        await d.portfolio("raced", PortfolioKind.TRACKING)
        await d.trade("raced", Side.BUY, "NVDA", "4", "1000", date(2024, 6, 3))
        racing = OwnerRecordsFirst(d.db, d.prices, d.hub, clock=d.clock)
        applier = SplitApplier(d.db, d.market, racing, clock=d.clock)

        assert await applier.apply_due() == 0
        [by_hand] = await d.splits.find("u-1", "raced")
        assert by_hand.recorded.split.day == date(2024, 6, 7)
        assert (await d.book("raced")).quantity("NVDA") == D(40)  # split once, not 400
        assert await d.notes() == 0


async def test_a_history_the_split_would_break_is_left_whole_and_the_others_split(
    portfolio_database_url: str,
) -> None:
    async with desk(portfolio_database_url) as d:
        for pid in ("broken", "fine"):
            await d.portfolio(pid, PortfolioKind.TRACKING)
            await d.trade(pid, Side.BUY, "INTC", "90", "30", date(2024, 6, 3))
        # Sold after the 1-for-3, as if it had not happened: 60 of the 30 shares it left.
        await d.trade("broken", Side.SELL, "INTC", "60", "31", date(2024, 6, 11))

        assert await d.applier().apply_due() == 1
        assert await d.splits.find("u-1", "broken") == []
        assert (await d.book("broken")).quantity("INTC") == D(30)
        assert (await d.book("fine")).quantity("INTC") == D(30)
        assert await d.notes() == 1
        # Tried again each round, still refused, still nothing written.
        assert await d.applier().apply_due() == 0
        assert await d.notes() == 1


async def test_an_older_split_is_recorded_where_held_at_the_first_round_not_where_sold_before(
    portfolio_database_url: str,
) -> None:
    """A leader's first round looks at the whole calendar: a split long past the window is
    recorded in a portfolio that held the stock then (years of history imported before the
    service ran), not in one that sold before it; the next round, nothing changed, reads none."""
    old_split = {"NVDA": {date(2024, 5, 1): (2, 1)}, "TSLA": {SPLIT_DAY: (3, 1)}}
    async with desk(portfolio_database_url, schedule=old_split) as d:
        await d.portfolio("p", PortfolioKind.TRACKING)
        await d.trade("p", Side.BUY, "NVDA", "4", "1000", date(2024, 4, 3))
        await d.trade("p", Side.BUY, "TSLA", "4", "180", date(2024, 4, 3))
        await d.trade("p", Side.SELL, "TSLA", "4", "190", date(2024, 4, 10))
        applier = d.applier()
        assert await applier.apply_due() == 1
        [nvda] = await d.splits.find("u-1", "p")
        assert (nvda.recorded.split.symbol, nvda.quantity_before, nvda.quantity_after) == (
            "NVDA",
            D(4),
            D(8),
        )
        assert (await d.book("p")).quantity("NVDA") == D(8)
        assert await applier.apply_due() == 0
        assert await d.notes() == 1


async def test_a_trade_back_dated_before_an_older_split_gets_it_at_the_next_round(
    portfolio_database_url: str,
) -> None:
    """A buy recorded today but dated before a split long past the window (an import of
    older history) changes the portfolio's history: the next round looks at its whole calendar
    and records the split, once."""
    old_split = {"NVDA": {date(2024, 5, 1): (2, 1)}}
    async with desk(portfolio_database_url, schedule=old_split) as d:
        await d.portfolio("p", PortfolioKind.TRACKING)
        await d.trade("p", Side.BUY, "NVDA", "3", "120", date(2024, 6, 3))  # after the split
        applier = d.applier()
        assert await applier.apply_due() == 0
        assert await d.splits.find("u-1", "p") == []
        await d.trade("p", Side.BUY, "NVDA", "4", "1000", date(2024, 4, 3))  # before it
        assert await applier.apply_due() == 1
        [nvda] = await d.splits.find("u-1", "p")
        assert (nvda.quantity_before, nvda.quantity_after) == (D(4), D(8))
        assert (await d.book("p")).quantity("NVDA") == D(11)
        assert await applier.apply_due() == 0
        assert await d.notes() == 1


async def test_a_round_decodes_only_the_books_stored_anew_since_the_last_round_read_them(
    portfolio_database_url: str,
) -> None:
    """Every round reads every stored book, for the symbols held and to tell which portfolios
    changed since the last; one whose stored text is as the last round read it is not decoded
    again (its symbols are kept from then), at the once-a-day round in full too. One stored
    anew since is decoded and its new holding is split."""
    now = NOW
    async with desk(portfolio_database_url, clock=lambda: now) as d:
        for pid in ("a", "b", "c"):
            await d.portfolio(pid, PortfolioKind.TRACKING)
            await d.trade(pid, Side.BUY, "AAPL", "5", "190", date(2024, 6, 3))
        applier = d.applier()
        assert (await applier.apply_due(), applier.decoded) == (0, 3)
        assert (await applier.apply_due(), applier.decoded) == (0, 3)
        now += FULL_EVERY
        assert (await applier.apply_due(), applier.decoded) == (0, 3)

        await d.trade("b", Side.BUY, "NVDA", "4", "1000", date(2024, 6, 3))
        assert (await applier.apply_due(), applier.decoded) == (1, 4)
        assert (await d.book("b")).quantity("NVDA") == D(40)
        # Recording the split stored b's book anew: decoded once more, then not.
        assert (await applier.apply_due(), applier.decoded) == (0, 5)
        assert (await applier.apply_due(), applier.decoded) == (0, 5)


@one_utc_day
async def test_through_the_server_the_split_reads_as_recorded_and_the_owner_hears_it(
    start_portfolio: StartPortfolio, redis_url: str
) -> None:
    """The real server (its stream fed through Redis, as another replica's leader would feed
    it): the market's split lists, positions and deletes as one CreateSplit recorded."""
    today = utc_today()
    effective = today - timedelta(days=2)
    shared = create_cache(redis_url, prefix="sf:portfolio:")
    hub = EventHub(shared)
    await hub.start()
    try:
        async with (
            start_portfolio(REDIS_URL=redis_url) as s,
            desk(
                s.database_url,
                schedule={"NFLX": {effective: (10, 1)}},
                clock=lambda: datetime.now(UTC),
                hub=hub,
            ) as d,
        ):
            who, user_id = await s.account()
            p = await s.portfolio(who)
            await s.trade(
                who, p.id, "buy", "3", "640", symbol="NFLX", executed_at=noon(today - timedelta(5))
            )
            async with collecting(s) as events:
                assert await d.applier().apply_due() == 1
                await until(lambda: any(e.HasField("portfolio_value") for e in events), "a value")
            [heard] = [e for e in events if e.HasField("portfolio_value")]
            assert (heard.user_id, heard.portfolio_value.portfolio_id) == (user_id, p.id)

            listed = await s.stub.ListSplits(pb.ListSplitsRequest(portfolio_id=p.id), metadata=who)
            [split] = listed.splits
            assert (split.symbol, split.date, split.numerator, split.denominator) == (
                "NFLX",
                effective.isoformat(),
                10,
                1,
            )
            assert (split.quantity_before, split.quantity_after) == ("3", "30")
            positions = await s.stub.ListPositions(
                pb.ListPositionsRequest(portfolio_id=p.id), metadata=who
            )
            [held] = positions.positions
            assert (held.quantity, held.cost_basis, held.average_cost) == (
                "30",
                "1920.00",
                "64.00",
            )

            await s.stub.DeleteSplit(
                pb.DeleteSplitRequest(portfolio_id=p.id, id=split.id), metadata=who
            )
            assert await d.applier().apply_due() == 0
            listed = await s.stub.ListSplits(pb.ListSplitsRequest(portfolio_id=p.id), metadata=who)
            assert list(listed.splits) == []
    finally:
        await hub.close()
        await shared.close()


# --- from Alpha Vantage --------------------------------------------------------------------

AV_NOW = datetime(2024, 1, 8, 21, 5, tzinfo=UTC)  # the fake's latest trading day


def provider(fake: FakeAlphaVantage, cache: Cache) -> AlphaVantage:
    config = load_market_config(
        {
            "USE_MOCK_PRICES": "false",
            "ALPHA_VANTAGE_API_KEY": API_KEY,
            "ALPHA_VANTAGE_URL": fake.url,
        }
    )
    return AlphaVantage(config, cache, clock=lambda: AV_NOW)


def splits_asked(fake: FakeAlphaVantage) -> list[str]:
    return [r.params["symbol"] for r in fake.calls("SPLITS")]


async def test_alpha_vantage_splits_are_asked_for_held_symbols_once_a_day_and_recorded(
    portfolio_database_url: str,
    cache: Cache,
) -> None:
    async with FakeAlphaVantage() as fake, desk(portfolio_database_url, clock=lambda: AV_NOW) as d:
        fake.listings["AAPL"].splits = [("2024-01-05", "4.0000"), ("2020-08-31", "4.0000")]
        fake.listings["MSFT"].splits = [("2024-01-04", "0.5000"), ("2024-01-03", "bad")]
        fake.listings["TSLA"].splits = [("2024-01-05", "3.0000")]
        await d.portfolio("p", PortfolioKind.TRACKING)
        await d.trade("p", Side.BUY, "AAPL", "8", "180", date(2024, 1, 2))
        await d.trade("p", Side.BUY, "MSFT", "6", "370", date(2024, 1, 2))
        # TSLA was held in the window, and sold before its split: asked for, not split.
        await d.trade("p", Side.BUY, "TSLA", "4", "240", date(2024, 1, 2))
        await d.trade("p", Side.SELL, "TSLA", "4", "241", date(2024, 1, 3))
        av = provider(fake, cache)
        try:
            # One symbol not cached a round, in order: AAPL, then MSFT, then TSLA.
            assert await d.applier(av).apply_due() == 1
            assert splits_asked(fake) == ["AAPL"]
            assert await d.applier(av).apply_due() == 1
            assert splits_asked(fake) == ["AAPL", "MSFT"]
            assert await d.applier(av).apply_due() == 0
            assert splits_asked(fake) == ["AAPL", "MSFT", "TSLA"]
            # The answers are cached for the day: nothing is asked, nothing recorded again.
            assert await d.applier(av).apply_due() == 0
            assert splits_asked(fake) == ["AAPL", "MSFT", "TSLA"]
        finally:
            await av.close()
        book = await d.book("p")
        assert (book.quantity("AAPL"), book.quantity("MSFT"), book.quantity("TSLA")) == (
            D(32),
            D(3),
            D(0),
        )
        ratios = [
            (e.recorded.split.symbol, e.recorded.split.day, e.recorded.split.ratio)
            for e in await d.splits.find("u-1", "p")
        ]
        assert ratios == [("MSFT", date(2024, 1, 4), D(1)), ("AAPL", date(2024, 1, 5), D(4))]
        [msft] = await d.splits.find("u-1", "p", "MSFT")
        assert msft.recorded.split.of == 2


async def test_a_rate_limited_provider_records_nothing_and_a_later_round_records_the_split(
    portfolio_database_url: str,
    cache: Cache,
) -> None:
    async with FakeAlphaVantage() as fake, desk(portfolio_database_url, clock=lambda: AV_NOW) as d:
        fake.listings["AAPL"].splits = [("2024-01-05", "4.0000")]
        await d.portfolio("p", PortfolioKind.TRACKING)
        await d.trade("p", Side.BUY, "AAPL", "8", "180", date(2024, 1, 2))
        for limit in ("note", "information"):
            fake.mode = limit
            av = provider(fake, cache)
            try:
                assert await d.applier(av).apply_due() == 0
            finally:
                await av.close()
            assert await d.splits.find("u-1", "p") == []
            # The provider's cooldown over (a minute on): the next round asks again.
            await cache.delete(COOLDOWN_KEY)
        assert splits_asked(fake) == ["AAPL", "AAPL"]

        fake.mode = "ok"
        av = provider(fake, cache)
        try:
            assert await d.applier(av).apply_due() == 1
        finally:
            await av.close()
        assert splits_asked(fake) == ["AAPL", "AAPL", "AAPL"]
        assert (await d.book("p")).quantity("AAPL") == D(32)


async def test_a_symbol_sold_since_its_split_is_still_asked_within_the_window_and_split(
    portfolio_database_url: str,
    cache: Cache,
) -> None:
    """Nobody holds TSLA now: "sold" held it when it split 3-for-1 and sold the 4 shares its
    book held after. The provider is asked one symbol a round, so the first round (every
    portfolio in full) asks AAPL (held) only; the next, with nothing changed, still asks TSLA
    (held in the window) and the split is recorded where it was held: the sale was of split
    shares, at a third of the cost. INTC, sold before the window in a portfolio unchanged
    since, is left to the rounds that look at everything in full: the budget goes to the
    window's symbols."""
    async with FakeAlphaVantage() as fake, desk(portfolio_database_url, clock=lambda: AV_NOW) as d:
        fake.listings["TSLA"].splits = [("2024-01-04", "3.0000")]
        await d.portfolio("holds", PortfolioKind.TRACKING)
        await d.trade("holds", Side.BUY, "AAPL", "8", "180", date(2024, 1, 2))
        await d.portfolio("sold", PortfolioKind.TRACKING)
        await d.trade("sold", Side.BUY, "TSLA", "4", "240", date(2024, 1, 2))
        await d.trade("sold", Side.SELL, "TSLA", "4", "81", date(2024, 1, 5))
        assert (await d.book("sold")).quantity("TSLA") == D(0)
        await d.portfolio("long-gone", PortfolioKind.TRACKING)
        await d.trade("long-gone", Side.BUY, "INTC", "10", "45", date(2023, 11, 1))
        await d.trade("long-gone", Side.SELL, "INTC", "10", "44", date(2023, 12, 1))
        av = provider(fake, cache)
        applier = d.applier(av)
        try:
            assert await applier.apply_due() == 0
            assert splits_asked(fake) == ["AAPL"]
            assert await applier.apply_due() == 1
            assert splits_asked(fake) == ["AAPL", "TSLA"]
            # Both cached for the day, the split noted: nothing asked or recorded again.
            assert await applier.apply_due() == 0
            assert splits_asked(fake) == ["AAPL", "TSLA"]
        finally:
            await av.close()
        [tsla] = await d.splits.find("u-1", "sold")
        assert (tsla.recorded.split.day, tsla.quantity_before, tsla.quantity_after) == (
            date(2024, 1, 4),
            D(4),
            D(12),
        )
        sold = await d.book("sold")
        (lot,) = sold.lots("TSLA")
        assert (sold.quantity("TSLA"), lot.unit_cost) == (D(8), D(80))
        # 4 sold at 81 of shares that cost 80 each, not 240: a gain of 4, not a loss of 636.
        assert sold.realized_gain() == D(4)
        assert await d.splits.find("u-1", "holds") == []


def seed_with_a_split_since(
    day: date, today: date, *, forward: bool = False
) -> tuple[int, str, date, SplitRatio]:
    """A MOCK_SEED whose schedule has a split from `day` to `today` (one seed in about sixty
    has one in a given week; `forward`: one that gives more shares, not a reverse split): the
    server's own market then announces it."""
    for seed in range(1, 5000):
        schedule = SplitSchedule(seed=seed)
        for symbol in sorted(schedule.symbols):
            for effective, (new, old) in schedule.between(symbol, day, today).items():
                if not forward or new > old:
                    return seed, symbol, effective, (new, old)
    raise AssertionError("no seed has a split in the range")


@one_utc_day
async def test_the_market_leader_records_its_markets_split_in_the_holders_portfolio(
    start_portfolio: StartPortfolio,
) -> None:
    """The server as deployed: its simulated market's schedule, its revaluation job (every
    0.2 s here) recording the split on the leader."""
    today = utc_today()
    seed, symbol, effective, (new, old) = seed_with_a_split_since(today - timedelta(5), today)
    async with start_portfolio(MOCK_SEED=str(seed), PORTFOLIO_REVALUE_INTERVAL="0.2") as s:
        who = await s.user()
        p = await s.portfolio(who)
        bought = noon(effective - timedelta(days=3))
        await s.trade(who, p.id, "buy", "12", "100", symbol=symbol, executed_at=bought)

        async def listed() -> list[pb.StockSplit]:
            reply = await s.stub.ListSplits(pb.ListSplitsRequest(portfolio_id=p.id), metadata=who)
            return list(reply.splits)

        async def split_recorded() -> bool:
            return bool(await listed())

        await until_async(split_recorded, "the market's split")
        [split] = await listed()
        assert (split.symbol, split.date, split.numerator, split.denominator) == (
            symbol,
            effective.isoformat(),
            new,
            old,
        )
        assert split.quantity_after == str(12 * new // old)


@one_utc_day
async def test_the_leader_splits_a_portfolio_that_sold_the_stock_after_the_split(
    start_portfolio: StartPortfolio,
) -> None:
    """Nobody holds the stock now: the portfolio bought it before the split and sold the 12
    shares its book held after, recorded while no round ran (a leader down, trades entered
    late). The leader that comes up records the split there all the same, and the sale reads
    as one of split shares: its gain on the split cost, the rest of the shares still held."""
    today = utc_today()
    seed, symbol, effective, (new, old) = seed_with_a_split_since(
        today - timedelta(5), today - timedelta(1), forward=True
    )
    split_cost = D(120) * old / new
    sold_at = split_cost + 5
    # Its job waits an hour (the harness's interval): no round runs while the trades are made.
    async with start_portfolio(MOCK_SEED=str(seed)) as s:
        who = await s.user()
        p = await s.portfolio(who)
        bought = noon(effective - timedelta(days=3))
        await s.trade(who, p.id, "buy", "12", "120", symbol=symbol, executed_at=bought)
        await s.trade(
            who, p.id, "sell", "12", f"{sold_at:f}", symbol=symbol, executed_at=noon(effective)
        )
        assert (await s.read(who, p.id)).realized_gain == f"{12 * (sold_at - 120):.2f}"

    async with start_portfolio(MOCK_SEED=str(seed), PORTFOLIO_REVALUE_INTERVAL="0.2") as s:

        async def split_recorded() -> bool:
            return bool(await splits_of(s, who, p.id))

        await until_async(split_recorded, "the market's split in a portfolio that sold since")
        [split] = await splits_of(s, who, p.id)
        assert (split.symbol, split.date, split.numerator, split.denominator) == (
            symbol,
            effective.isoformat(),
            new,
            old,
        )
        assert (split.quantity_before, split.quantity_after) == ("12", str(12 * new // old))

        positions = await s.stub.ListPositions(
            pb.ListPositionsRequest(portfolio_id=p.id), metadata=who
        )
        [held] = positions.positions
        left = 12 * new // old - 12
        assert (held.symbol, held.quantity, held.average_cost) == (
            symbol,
            str(left),
            f"{split_cost:.2f}",
        )
        gains = await realized(s, who, p.id)
        [sale] = gains.gains
        assert (sale.quantity, sale.sold_on, sale.acquired_on) == (
            "12",
            effective.isoformat(),
            (effective - timedelta(days=3)).isoformat(),
        )
        assert (D(sale.cost_basis), D(sale.gain)) == (12 * split_cost, D(60))
        assert D(gains.totals.total) == D(60)
        assert (await s.read(who, p.id)).realized_gain == "60.00"
