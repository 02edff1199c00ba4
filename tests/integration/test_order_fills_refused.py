"""Orders whose fill the market cannot convert, with the production wiring (Trades with an
Exchange) over the real Alpha Vantage client and the project's fake of it, on SQLite and
PostgreSQL: such an order is refused when placed or rejected when it crosses, and never stops
the matching of everyone else's orders (found by a review)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest

from services.portfolio.alpha_vantage import AlphaVantage
from services.portfolio.config import load_market_config
from services.portfolio.domain import Side
from services.portfolio.events import EventHub
from services.portfolio.exchange import Exchange
from services.portfolio.market_data import Quote
from services.portfolio.order_desk import Orders
from services.portfolio.order_matcher import OrderMatcher
from services.portfolio.orders import OrderDraft, OrderStatus, OrderType, TimeInForce
from services.portfolio.portfolios import PortfolioDraft, Portfolios
from services.portfolio.prices import Prices
from services.portfolio.records import PortfolioKind
from services.portfolio.trades import TradeDraft, Trades
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import InvalidArgument, NotFound
from services.runtime.local_cache import InProcessCache
from tests.fakes.alpha_vantage import API_KEY, FakeAlphaVantage
from tests.integration.order_harness import Desk


@dataclass
class AvDesk:
    """The production wiring of orders (Trades with an Exchange, as server.py builds them) over
    the real Alpha Vantage client talking to the project's fake."""

    orders: Orders
    portfolios: Portfolios
    matcher: OrderMatcher
    fake: FakeAlphaVantage
    trades: Trades

    async def paper(self, user: str, currency: str = "USD") -> str:
        valued = await self.portfolios.create(
            user,
            PortfolioDraft(
                name="Paper",
                kind=PortfolioKind.PAPER,
                initial_cash="100000",
                base_currency=currency,
            ),
        )
        return valued.portfolio.id

    async def limit_buy(self, user: str, portfolio_id: str, symbol: str, limit: str) -> str:
        draft = OrderDraft(
            portfolio_id=portfolio_id,
            symbol=symbol,
            side=Side.BUY,
            type=OrderType.LIMIT,
            quantity="1",
            limit_price=limit,
            # On the real clock: a DAY order placed just before midnight UTC would expire at
            # the test's tick just after it instead of filling or being rejected.
            time_in_force=TimeInForce.GTC,
        )
        return (await self.orders.place(user, draft)).id


@pytest.fixture
async def av_desk(portfolio_database_url: str) -> AsyncIterator[AvDesk]:
    db = Database(portfolio_database_url)
    cache = InProcessCache()
    async with contextlib.AsyncExitStack() as stack, FakeAlphaVantage() as fake:
        stack.push_async_callback(db.close)
        stack.push_async_callback(cache.close)
        config = load_market_config(
            {
                "USE_MOCK_PRICES": "false",
                "ALPHA_VANTAGE_API_KEY": API_KEY,
                "ALPHA_VANTAGE_URL": fake.url,
                "ALPHA_VANTAGE_PER_MINUTE": "1000",
                "ALPHA_VANTAGE_PER_DAY": "100000",
            }
        )
        market = AlphaVantage(config, cache)
        stack.push_async_callback(market.close)
        hub = EventHub(None)
        exchange = Exchange(db, market)
        prices = Prices(db, market, exchange)
        trades = Trades(db, market, prices, hub, exchange=exchange)
        orders = Orders(db, trades, hub)
        matcher = OrderMatcher(orders, market, hub)
        yield AvDesk(orders, Portfolios(db, prices, hub), matcher, fake, trades)


def tick(symbol: str, price: str) -> Quote:
    return Quote(symbol, Decimal(price), Decimal(0), Decimal(0), utc_now(), "alphavantage")


async def test_an_order_on_a_listing_in_a_currency_we_do_not_convert_is_refused_when_placed(
    av_desk: AvDesk,
) -> None:
    """Alpha Vantage lists TSCO.LON in GBX: a trade in it is refused (422), and so is an order,
    which used to be taken and then failed at every crossing."""
    d = av_desk
    mallory = await d.paper("mallory")
    with pytest.raises(InvalidArgument) as trade:
        await d.trades.record(
            "mallory", mallory, TradeDraft(Side.BUY, "TSCO.LON", "1", price="250")
        )
    with pytest.raises(InvalidArgument) as placed:
        await d.limit_buy("mallory", mallory, "TSCO.LON", "300")
    assert placed.value.fields == trade.value.fields
    assert [f for f, _ in placed.value.fields] == ["symbol"]


async def test_an_order_that_cannot_be_converted_is_rejected_and_the_others_fill(
    av_desk: AvDesk,
) -> None:
    """A franc portfolio's AAPL order, with no USD/CHF rate at the provider: crossed, it is
    REJECTED with the reason (it stayed OPEN, dropped from the matcher, as if its portfolio had
    been deleted), and another user's order crossed by the same step fills."""
    d = av_desk
    francs = await d.paper("carol", currency="CHF")
    with pytest.raises(NotFound) as trade:
        await d.trades.record("carol", francs, TradeDraft(Side.BUY, "AAPL", "1", price="185"))
    stuck = await d.limit_buy("carol", francs, "AAPL", "200")
    honest = await d.limit_buy("alice", await d.paper("alice"), "AAPL", "200")
    await d.matcher.on_step([tick("AAPL", "185")])
    rejected = await d.orders.get("carol", stuck)
    assert (rejected.status, rejected.status_reason) == (OrderStatus.REJECTED, trade.value.reason)
    filled = await d.orders.get("alice", honest)
    assert (filled.status, filled.filled_price) == (OrderStatus.FILLED, Decimal("185"))


async def test_a_filled_stop_order_says_its_stop_was_reached(desk: Desk) -> None:
    """Order.triggered: "A stop or stop-limit order whose stop price was reached." A stop buy
    at 105 filled by a tick at 106 said false."""
    order = await desk.place(OrderType.STOP, Side.BUY, "1", stop_price="105")
    await desk.step("106")
    filled = await desk.order(order.id)
    assert (filled.status, filled.triggered) == (OrderStatus.FILLED, True)
