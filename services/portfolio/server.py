"""Builds the portfolio service's server parts from its config."""

from __future__ import annotations

import contextlib

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from services.portfolio.calculator import Calculator
from services.portfolio.config import load_portfolio_config
from services.portfolio.events import EventHub
from services.portfolio.exports import Exports
from services.portfolio.imports import Imports
from services.portfolio.market_data import create_market_data
from services.portfolio.orm import idempotency_keys
from services.portfolio.portfolios import Portfolios
from services.portfolio.prices import Prices
from services.portfolio.reports import Reports
from services.portfolio.servicer import PortfolioServicer, UseCases
from services.portfolio.trades import Trades
from services.runtime.cache import create_cache
from services.runtime.config import RuntimeConfig
from services.runtime.db import Database
from services.runtime.idempotency import IdempotencyStore
from services.runtime.server import ServiceParts
from services.runtime.sessions import remote_sessions

SERVICE = portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioService"]


async def build(config: RuntimeConfig, resources: contextlib.AsyncExitStack) -> ServiceParts:
    settings = load_portfolio_config(config)
    db = Database(config.database_url)
    resources.push_async_callback(db.close)
    cache = create_cache(config.redis_url, prefix="sf:portfolio:")
    resources.push_async_callback(cache.close)
    market = create_market_data(settings.market, cache)
    resources.push_async_callback(market.close)
    await market.start()
    # Only a shared cache (Redis) carries events between replicas.
    hub = EventHub(cache if config.redis_url else None)
    resources.push_async_callback(hub.close)
    await hub.start()

    prices = Prices(db, market)
    trades = Trades(db, market, prices, hub)
    cases = UseCases(
        portfolios=Portfolios(db, prices, hub),
        trades=trades,
        imports=Imports(trades, hub, max_rows=settings.max_import_rows),
        exports=Exports(db, prices),
        reports=Reports(db, prices),
        market=market,
        hub=hub,
        idempotency=IdempotencyStore(db, idempotency_keys, ttl=settings.idempotency_ttl),
    )
    calculator = Calculator(db, prices, hub, cache, interval=settings.revalue_interval)
    resources.push_async_callback(calculator.stop)
    calculator.start()
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
