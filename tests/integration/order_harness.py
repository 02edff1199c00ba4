"""The order desk of the matching tests (a fixture, wired through the root conftest's
pytest_plugins): orders, trades, a matcher stepped by hand and splits over a real database
(SQLite and PostgreSQL), with a clock a test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest

from services.portfolio.domain import Side
from services.portfolio.events import EventHub
from services.portfolio.market_data import Quote
from services.portfolio.mock_market import MockMarket
from services.portfolio.order_desk import Orders
from services.portfolio.order_matcher import OrderMatcher
from services.portfolio.orders import Order, OrderDraft, OrderType, TimeInForce
from services.portfolio.portfolios import PortfolioDraft, Portfolios
from services.portfolio.prices import Prices
from services.portfolio.records import PortfolioKind, RecordedTrade
from services.portfolio.repository import TradeRepository
from services.portfolio.splits import SplitDraft, Splits
from services.portfolio.trades import TradeDraft, Trades
from services.runtime.clock import utc_now
from services.runtime.db import Database

USER = "user-1"
SYMBOL = "AAPL"


def clear_of_midnight() -> timedelta:
    """How far ahead of real time a test's clock starts so that no midnight UTC falls within
    its first ten minutes (its DAY orders would expire under it): none, but in the ten minutes
    before a midnight, to a minute after it."""
    now = utc_now()
    midnight = datetime.combine(now.date() + timedelta(days=1), time(), UTC)
    left = midnight - now
    return timedelta(0) if left > timedelta(minutes=10) else left + timedelta(minutes=1)


@dataclass
class Clock:
    """Real time moved on by `ahead` (never behind it: the portfolio's opening deposit is
    dated by the real clock, and a fill must come after it). It starts clear of midnight UTC:
    a DAY order placed by a test must live through the test unless the test moves it on."""

    ahead: timedelta = field(default_factory=clear_of_midnight)

    def __call__(self) -> datetime:
        return utc_now() + self.ahead


@dataclass
class Desk:
    db: Database
    orders: Orders
    trades: Trades
    matcher: OrderMatcher
    portfolio_id: str
    clock: Clock
    hub: EventHub
    splits: Splits
    events: list[object] = field(default_factory=list)

    async def place(self, type: OrderType, side: Side, quantity: str, **prices: str) -> Order:
        draft = OrderDraft(
            portfolio_id=self.portfolio_id,
            symbol=SYMBOL,
            side=side,
            type=type,
            quantity=quantity,
            time_in_force=prices.pop("time_in_force", None),  # type: ignore[arg-type]
            **prices,
        )
        return await self.orders.place(USER, draft)

    async def step(self, price: str, matcher: OrderMatcher | None = None) -> None:
        quote = Quote(SYMBOL, Decimal(price), Decimal(0), Decimal(0), self.clock(), "mock")
        await (matcher or self.matcher).on_step([quote])

    async def order(self, order_id: str) -> Order:
        return await self.orders.get(USER, order_id)

    async def trades_of(self, order_id: str) -> list[RecordedTrade]:
        async with self.db.reading() as session:
            found = await TradeRepository(session).of(self.portfolio_id)
        return [t for t in found if t.order_id == order_id]

    async def buy(self, quantity: str, price: str) -> None:
        draft = TradeDraft(side=Side.BUY, symbol=SYMBOL, quantity=quantity, price=price)
        await self.trades.record(USER, self.portfolio_id, draft)


@pytest.fixture
async def desk(portfolio_database_url: str) -> AsyncIterator[Desk]:
    db = Database(portfolio_database_url)
    market = MockMarket(seed=7, interval=3600)
    hub = EventHub(None)
    clock = Clock()
    prices = Prices(db, market)
    trades = Trades(db, market, prices, hub, clock=clock)
    orders = Orders(db, trades, hub, clock=clock)
    valued = await Portfolios(db, prices, hub).create(
        USER, PortfolioDraft(name="Paper", kind=PortfolioKind.PAPER, initial_cash="10000")
    )
    matcher = OrderMatcher(orders, market, hub)
    try:
        splits = Splits(db, prices, hub, orders=orders, clock=clock)
        yield Desk(db, orders, trades, matcher, valued.portfolio.id, clock, hub, splits)
    finally:
        await market.close()
        await db.close()


BUY, SELL = Side.BUY, Side.SELL
LIMIT, STOP, STOP_LIMIT = OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT


async def placed_days_ago(desk: Desk, days: int, *args: object, **prices: str) -> Order:
    """An order placed `days` days before now (before a split dated yesterday)."""
    ahead = desk.clock.ahead
    desk.clock.ahead = ahead - timedelta(days=days)
    try:
        return await desk.place(*args, time_in_force=TimeInForce.GTC, **prices)  # type: ignore[arg-type]
    finally:
        desk.clock.ahead = ahead


async def record_split(desk: Desk, numerator: int, denominator: int, days_ago: int = 1) -> str:
    day = (desk.clock() - timedelta(days=days_ago)).date().isoformat()
    draft = SplitDraft(SYMBOL, day, numerator, denominator)
    return (await desk.splits.create(USER, desk.portfolio_id, draft)).recorded.id


def terms(order: Order) -> tuple[str, str | None, str | None, str]:
    def shown(value: Decimal | None) -> str | None:
        return None if value is None else f"{value.normalize():f}"

    return (
        f"{order.quantity.normalize():f}",
        shown(order.limit_price),
        shown(order.stop_price),
        order.status_reason,
    )
