"""The leader's revaluation round (services/portfolio/calculator.py) on SQLite and PostgreSQL:
it decodes only the stored books whose text changed since the last round (a trade, a trade
deleted, a split), values every portfolio as a replay of its history does, and forgets a deleted
portfolio; and, through two real servers on one database, a trade recorded on the other replica
(no event reaches the leader: no Redis between them) is in the leader's next value."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from services.portfolio.calculator import Calculator, kept_figures
from services.portfolio.decoded_books import DecodedBooks
from services.portfolio.domain import Book, BookFigures, Side, Trade, present_money, present_sum
from services.portfolio.events import EventHub, Subscription
from services.portfolio.mock_market import MockMarket
from services.portfolio.prices import Prices
from services.portfolio.records import Portfolio, PortfolioKind
from services.portfolio.repository import PortfolioRepository, SplitRepository, TradeRepository
from services.portfolio.splits import SplitDraft, Splits
from services.portfolio.trade_deletion import TradeDeletion
from services.portfolio.trades import Trades
from services.runtime.db import Database
from tests.integration.portfolio_harness import SEED, StartPortfolio, collecting
from tests.utc_days import at
from tests.waiting import until

D = Decimal
NOW = datetime(2024, 6, 12, 12, tzinfo=UTC)
USER = "u-1"


@dataclass
class Desk:
    """The portfolio service's parts the revaluation works beside, over one database."""

    db: Database
    prices: Prices
    trades: Trades
    splits: Splits
    deletion: TradeDeletion
    values: EventHub  # what the calculator publishes, alone (the trades publish elsewhere)

    async def portfolio(self, pid: str) -> None:
        async with self.db.transaction() as session:
            owned = Portfolio(pid, USER, pid, "", "USD", PortfolioKind.TRACKING, NOW, NOW)
            await PortfolioRepository(session).add(owned)

    async def buy(self, pid: str, symbol: str, quantity: str, price: str, day: date) -> str:
        trade = Trade(Side.BUY, symbol, D(quantity), D(price), D(0), at(day))
        _, recorded = await self.trades.append(USER, pid, [trade])
        return recorded[0].trade.id

    async def expected(self, pid: str) -> tuple[str, str]:
        """The portfolio's value and gain as a replay of its whole history gives them, at the
        market's prices, presented as a `portfolio_value` event presents them."""
        async with self.db.snapshot() as session:
            trades = [r.trade for r in await TradeRepository(session).of(pid)]
            splits = [r.split for r in await SplitRepository(session).of(pid)]
        book = Book.replay(trades, splits=splits, policy=PortfolioKind.TRACKING.policy)
        totals = book.totals(await self.prices.current(book.open_symbols()))
        return present_money(totals.total_value), present_sum(
            totals.total_value, -totals.total_cost
        )


@contextlib.asynccontextmanager
async def desk(url: str) -> AsyncIterator[Desk]:
    db = Database(url)
    market = MockMarket(seed=SEED, clock=lambda: NOW)  # never stepped: prices stand still
    prices = Prices(db, market, clock=lambda: NOW)
    hub = EventHub(None)
    try:
        yield Desk(
            db,
            prices,
            Trades(db, market, prices, hub, clock=lambda: NOW),
            Splits(db, prices, hub, clock=lambda: NOW),
            TradeDeletion(db, prices, hub, clock=lambda: NOW),
            EventHub(None),
        )
    finally:
        await db.close()


async def revalued(calculator: Calculator, values: Subscription) -> dict[str, tuple[str, str]]:
    """One round: each portfolio valued, as its `portfolio_value` event says it."""
    count = await calculator.revalue_all()
    found: dict[str, tuple[str, str]] = {}
    for _ in range(count):
        value = (await asyncio.wait_for(anext(values), 5)).portfolio_value
        found[value.portfolio_id] = (value.total_value, value.total_gain_loss)
    return found


async def test_a_round_decodes_only_the_books_stored_anew_and_values_each_as_its_history(
    portfolio_database_url: str,
) -> None:
    async with desk(portfolio_database_url) as d:
        for pid in ("a", "b", "c"):
            await d.portfolio(pid)
            await d.buy(pid, "AAPL", "5", "190", date(2024, 6, 3))
        books: DecodedBooks[BookFigures] = kept_figures()
        calculator = Calculator(d.db, d.prices, d.values, interval=3600, books=books)
        values = d.values.subscribe()

        async def expected(*pids: str) -> dict[str, tuple[str, str]]:
            return {pid: await d.expected(pid) for pid in pids}

        first = await revalued(calculator, values)
        assert first == await expected("a", "b", "c")
        assert books.decoded == 3
        # Only prices could have moved: nothing decoded.
        assert await revalued(calculator, values) == first
        assert books.decoded == 3

        # A trade stores b's book anew: b alone is decoded, and valued with the trade.
        bought = await d.buy("b", "KO", "3", "60", date(2024, 6, 4))
        after_trade = await revalued(calculator, values)
        assert after_trade == await expected("a", "b", "c")
        assert after_trade["b"] != first["b"]
        assert books.decoded == 4
        # Deleted again, and a split recorded in c: those two only.
        await d.deletion.delete(USER, bought)
        await d.splits.create(USER, "c", SplitDraft("AAPL", "2024-06-05", 2, 1))
        after_split = await revalued(calculator, values)
        assert after_split == await expected("a", "b", "c")
        assert after_split["b"] == first["b"]
        # c holds twice the shares it held, at the same price (the market's is not split here).
        assert D(after_split["c"][0]) == 2 * D(first["c"][0])
        assert books.decoded == 6
        assert await revalued(calculator, values) == after_split
        assert books.decoded == 6

        # A deleted portfolio is no longer valued, nor kept.
        async with d.db.transaction() as session:
            assert await PortfolioRepository(session).remove("a", USER)
        assert await revalued(calculator, values) == await expected("b", "c")
        assert (len(books), books.decoded) == (2, 6)


async def test_a_trade_recorded_on_another_replica_is_in_the_leaders_next_value(
    start_portfolio: StartPortfolio,
) -> None:
    # Two replicas on one database and no Redis: the leader (revaluing every 0.2 s) hears
    # nothing of a trade the other records; only the stored book tells it.
    async with (
        start_portfolio(PORTFOLIO_REVALUE_INTERVAL="0.2") as leader,
        start_portfolio() as other,
    ):
        who, _ = await leader.account()
        p = await leader.portfolio(who)
        await leader.trade(who, p.id, "buy", "2", "60", symbol="KO")

        def values() -> list[tuple[str, str]]:
            return [
                (e.portfolio_value.total_value, e.portfolio_value.total_gain_loss)
                for e in events
                if e.HasField("portfolio_value") and e.portfolio_value.portfolio_id == p.id
            ]

        async with collecting(leader) as events:
            # 2 KO at the market's 62.40, bought for 120 brought in.
            await until(lambda: ("124.80", "4.80") in values(), "the value before")
            await other.trade(who, p.id, "buy", "3", "60", symbol="KO")
            # 5 KO at 62.40, bought for 300 brought in.
            await until(lambda: ("312.00", "12.00") in values(), "the value with the trade")
        seen = values()
        assert seen[-1] == ("312.00", "12.00")
        first_new = seen.index(("312.00", "12.00"))
        # Once in, every later round has it (none goes back to the book it kept).
        assert set(seen[first_new:]) == {("312.00", "12.00")}
        assert await other.trade_count(who, p.id) == 2


async def test_a_replica_that_stops_leading_keeps_no_book(portfolio_database_url: str) -> None:
    async with desk(portfolio_database_url) as d:
        for pid in ("a", "b"):
            await d.portfolio(pid)
            await d.buy(pid, "AAPL", "5", "190", date(2024, 6, 3))
        leading = True
        books: DecodedBooks[BookFigures] = kept_figures()
        calculator = Calculator(
            d.db, d.prices, d.values, interval=0.05, leading=lambda: leading, books=books
        )
        calculator.start()
        try:
            await until(lambda: len(books) == 2, "both books kept")
            leading = False
            await until(lambda: len(books) == 0, "nothing kept")
            leading = True
            await until(lambda: len(books) == 2, "both books kept again")
        finally:
            await calculator.stop()
        assert books.decoded == 4  # decoded anew by the replica leading again
