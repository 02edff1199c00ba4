"""Builds the portfolio service's server parts from its config."""

from __future__ import annotations

import contextlib
import logging

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from services.portfolio.alert_watch import AlertWatch
from services.portfolio.alerts import Alerts
from services.portfolio.allocations import Allocations
from services.portfolio.alpha_vantage import AlphaVantage
from services.portfolio.calculator import Calculator
from services.portfolio.config import MarketConfig, load_portfolio_config
from services.portfolio.dividends import DividendPayer
from services.portfolio.erasure import AccountErasure
from services.portfolio.events import EventHub
from services.portfolio.exchange import Exchange
from services.portfolio.exports import Exports
from services.portfolio.exposure import Exposures
from services.portfolio.imports import Imports
from services.portfolio.income_reports import IncomeReports
from services.portfolio.market_data import LedSource
from services.portfolio.market_splits import SplitApplier
from services.portfolio.mock_market import MockMarket
from services.portfolio.order_desk import Orders
from services.portfolio.order_matcher import OrderMatcher
from services.portfolio.orm import idempotency_keys, purge_cursor
from services.portfolio.overview import Overviews
from services.portfolio.plan_desk import Plans
from services.portfolio.plan_runner import PlanRunner
from services.portfolio.portfolios import Portfolios
from services.portfolio.prices import Prices
from services.portfolio.realized import RealizedGains
from services.portfolio.reports import Reports
from services.portfolio.servicer import PortfolioServicer, UseCases
from services.portfolio.shared_market import SharedMarket
from services.portfolio.splits import Splits
from services.portfolio.stocks import StockHistories
from services.portfolio.trade_deletion import TradeDeletion
from services.portfolio.trade_edits import TradeEdits
from services.portfolio.trades import Trades
from services.portfolio.watchlists import Watchlists
from services.runtime.account_deletions import DatabaseCursor, follow_account_deletions
from services.runtime.cache import Cache, create_cache
from services.runtime.config import RuntimeConfig
from services.runtime.db import Database
from services.runtime.idempotency import IdempotencyStore
from services.runtime.server import ServiceParts
from services.runtime.sessions import remote_sessions

log = logging.getLogger(__name__)

SERVICE = portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioService"]


def create_market_data(config: MarketConfig, cache: Cache) -> LedSource:
    """Alpha Vantage when a key is set and USE_MOCK_PRICES is not true, else the simulated
    market; says which."""
    if config.uses_alpha_vantage:
        log.info(
            "market data from Alpha Vantage",
            extra={
                "provider": "alphavantage",
                "url": config.alpha_vantage_url,
                "perMinute": config.alpha_vantage_per_minute,
                "perDay": config.alpha_vantage_per_day,
                "quoteCacheTtl": config.quote_cache_ttl,
            },
        )
        return AlphaVantage(config, cache)
    if config.use_mock_prices:
        reason = "USE_MOCK_PRICES=true"
        if config.alpha_vantage_api_key is not None:
            reason += " (unset USE_MOCK_PRICES to use the Alpha Vantage key)"
        log.info(
            "market data simulated",
            extra={
                "provider": "mock",
                "reason": reason,
                "seed": config.mock_seed,
                "intervalMs": config.mock_update_interval_ms,
            },
        )
    else:
        log.warning(
            "market data simulated",
            extra={
                "provider": "mock",
                "reason": "USE_MOCK_PRICES=false but ALPHA_VANTAGE_API_KEY is not set",
                "seed": config.mock_seed,
                "intervalMs": config.mock_update_interval_ms,
            },
        )
    return MockMarket(seed=config.mock_seed, interval=config.mock_update_interval_ms / 1000)


async def build(config: RuntimeConfig, resources: contextlib.AsyncExitStack) -> ServiceParts:
    settings = load_portfolio_config(config)
    db = Database(config.database_url)
    resources.push_async_callback(db.close)
    cache = create_cache(config.redis_url, prefix="sf:portfolio:")
    resources.push_async_callback(cache.close)
    # One market for every replica sharing the cache: a leader steps it (shared_market.py).
    market = SharedMarket(create_market_data(settings.market, cache), cache)
    resources.push_async_callback(market.close)
    await market.start()
    # Only a shared cache (Redis) carries events between replicas.
    hub = EventHub(cache if config.redis_url else None)
    resources.push_async_callback(hub.close)
    await hub.start()

    exchange = Exchange(db, market)
    prices = Prices(db, market, exchange)
    trades = Trades(db, market, prices, hub, exchange=exchange)
    orders = Orders(db, trades, hub)
    # Alerts are evaluated on every market step, fired by the market leader alone.
    alert_watch = AlertWatch(db, market.ticks, hub, cache, leading=lambda: market.leading)
    resources.push_async_callback(alert_watch.stop)
    await alert_watch.start()
    portfolios = Portfolios(db, prices, hub)
    cases = UseCases(
        portfolios=portfolios,
        trades=trades,
        imports=Imports(
            trades, hub, max_rows=settings.max_import_rows, exchange=exchange, orders=orders
        ),
        exports=Exports(db, prices),
        reports=Reports(db, prices, exchange=exchange),
        market=market,
        hub=hub,
        idempotency=IdempotencyStore(db, idempotency_keys, ttl=settings.idempotency_ttl),
        orders=orders,
        histories=StockHistories(market, prices),
        exchange=exchange,
        watchlists=Watchlists(db, market, prices, events=hub),
        alerts=Alerts(db, market, alert_watch.changed),
        splits=Splits(db, prices, hub, orders=orders),
        deletion=TradeDeletion(db, prices, hub),
        edits=TradeEdits(db, prices, hub, exchange),
        realized=RealizedGains(db),
        allocations=Allocations(db, portfolios, prices),
        income=IncomeReports(db, market, exchange),
        overviews=Overviews(portfolios, exchange),
        exposures=Exposures(portfolios, market),
        plans=Plans(db, trades),
    )
    calculator = Calculator(
        db,
        prices,
        hub,
        interval=settings.revalue_interval,
        leading=lambda: market.leading,
        dividends=DividendPayer(db, market, trades, hub, exchange),
        splits=SplitApplier(db, market, cases.splits),
    )
    resources.push_async_callback(calculator.stop)
    calculator.start()
    # Orders are matched on every market step, by the market leader alone (order_matcher.py).
    matcher = OrderMatcher(cases.orders, market, hub, leading=lambda: market.leading)
    resources.push_async_callback(matcher.stop)
    matcher.start()
    # Savings plans buy on their dates, by the market leader alone (plan_runner.py).
    plan_runner = PlanRunner(
        db,
        market,
        trades,
        hub,
        interval=settings.plan_interval,
        leading=lambda: market.leading,
    )
    resources.push_async_callback(plan_runner.stop)
    plan_runner.start()
    # A deleted account's portfolios, lists and alerts are erased here (one replica at a time).
    erasure = AccountErasure(db, alert_watch.changed)
    await follow_account_deletions(
        config,
        resources,
        erasure.erase,
        DatabaseCursor(db, purge_cursor),
        interval=settings.purge_interval,
        cache=cache,
    )
    servicer = PortfolioServicer(cases)

    def register(server: grpc.aio.Server) -> None:
        portfolio_pb2_grpc.add_PortfolioServiceServicer_to_server(servicer, server)

    return ServiceParts(
        services=[SERVICE],
        register=register,
        sessions=await remote_sessions(config, resources),
        checks={"database": db.ping},
        # Ending the hub's and the market's subscriptions ends the two open streams.
        draining=[hub.close, market.close],
    )
