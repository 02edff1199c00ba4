"""Order matching per market step (issue 16): 10,000 open orders over 50 symbols, every symbol
moving each step. Measured in-process on the matcher's own index (services/portfolio/
order_index.py, `OrderIndex.take_crossed`, plus putting back what waits on: a stop-limit whose
stop was reached), over a one-minute step of a 25%-volatility walk in whole cents. Each order
a step crosses is replaced by a fresh one after the step (not timed), so the book stays at
10,000.

The orders: per symbol, limits and stops on both sides and stop-limits, their levels within 5%
of the price on the side that waits (a limit buy below the price, a stop buy above it, ...).

Beside it, one fill end to end on SQLite: `Orders.fill` (the trade through `Trades.append`,
the portfolio locked, the book checked, the order marked FILLED in the same transaction).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from bench.measures import percentile
from bench.price_walk import PriceWalk
from services.portfolio.domain import Side
from services.portfolio.order_index import OrderIndex
from services.portfolio.orders import Order, OrderStatus, OrderType, TimeInForce

CENT = Decimal("0.01")
WHEN = datetime(2026, 12, 7, 14, 30, tzinfo=UTC)


@dataclass(frozen=True)
class OrderSettings:
    orders: int = 10_000
    symbols: int = 50
    warmup_steps: int = 300
    steps: int = 3000
    fills: int = 200  # end-to-end fills timed on SQLite
    seed: int = 16


@dataclass
class OrderReport:
    settings: OrderSettings
    per_step_ms: list[float] = field(default_factory=list)
    crossed: int = 0
    build_seconds: float = 0.0
    fill_ms: list[float] = field(default_factory=list)


def describe_orders(settings: OrderSettings) -> str:
    return (
        f"orders: {settings.orders:,} open orders over {settings.symbols} symbols, every symbol"
        f" moving each step; {settings.warmup_steps} steps of warm-up, then {settings.steps}"
        f" measured (in-process, OrderIndex); {settings.fills} fills end to end on SQLite"
    )


def _order(n: int, symbol: str, price: Decimal, rng: random.Random) -> Order:
    kind = rng.choice((OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT))
    side = rng.choice((Side.BUY, Side.SELL))
    # Waiting: a limit buy below the price, a limit sell above; a stop buy above, a stop sell
    # below (a stop-limit's limit a little beyond its stop).
    away = Decimal(str(round(rng.uniform(0.001, 0.05), 4)))
    waits_above = (side is Side.SELL) == (kind is OrderType.LIMIT)
    level = (price * (1 + away if waits_above else 1 - away)).quantize(CENT)
    limit = stop = None
    if kind is OrderType.LIMIT:
        limit = level
    else:
        stop = level
        if kind is OrderType.STOP_LIMIT:
            limit = (level * Decimal("1.01" if side is Side.BUY else "0.99")).quantize(CENT)
    return Order(
        id=f"o{n:08d}",
        user_id=f"u{n % 2000}",
        portfolio_id=f"p{n % 4000}",
        symbol=symbol,
        side=side,
        type=kind,
        quantity=Decimal(1),
        limit_price=limit,
        stop_price=stop,
        time_in_force=TimeInForce.GTC,
        status=OrderStatus.OPEN,
        created_at=WHEN,
        updated_at=WHEN,
    )


def run_matching(settings: OrderSettings, report: OrderReport) -> None:
    rng = random.Random(settings.seed)
    walk = PriceWalk(settings.symbols, rng)
    prices = walk.prices
    names = list(prices)
    started = time.perf_counter()
    index = OrderIndex(
        _order(n, names[n % len(names)], prices[names[n % len(names)]], rng)
        for n in range(settings.orders)
    )
    report.build_seconds = time.perf_counter() - started
    serial = settings.orders
    for step in range(settings.warmup_steps + settings.steps):
        prices = walk.step()
        began = time.perf_counter()
        done: list[Order] = []
        for symbol, price in prices.items():
            for order in index.take_crossed(symbol, price):
                if order.becomes_limit:
                    order = replace(order, triggered=True)
                    if not order.crossed_by(price):
                        index.add(order)
                        continue
                done.append(order)
        took = (time.perf_counter() - began) * 1000
        for order in done:  # new orders arrive: the book stays full (not timed)
            serial += 1
            index.add(_order(serial, order.symbol, prices[order.symbol], rng))
        if step >= settings.warmup_steps:
            report.per_step_ms.append(took)
            report.crossed += len(done)


async def _fills(settings: OrderSettings, report: OrderReport, url: str) -> None:
    from services.portfolio.events import EventHub
    from services.portfolio.market_data import Quote
    from services.portfolio.mock_market import MockMarket
    from services.portfolio.order_desk import Orders
    from services.portfolio.orders import OrderDraft
    from services.portfolio.portfolios import PortfolioDraft, Portfolios
    from services.portfolio.prices import Prices
    from services.portfolio.records import PortfolioKind
    from services.portfolio.trades import Trades
    from services.runtime.db import Database

    db = Database(url)
    market = MockMarket(seed=7, interval=3600)
    hub = EventHub(None)
    prices = Prices(db, market)
    trades = Trades(db, market, prices, hub)
    orders = Orders(db, trades, hub)
    try:
        # Several portfolios, as many orders each as the limit of open orders allows.
        placed: list[Order] = []
        while len(placed) < settings.fills:
            valued = await Portfolios(db, prices, hub).create(
                "bench",
                PortfolioDraft(name="Paper", kind=PortfolioKind.PAPER, initial_cash="1000000"),
            )
            for _ in range(min(100, settings.fills - len(placed))):
                draft = OrderDraft(
                    portfolio_id=valued.portfolio.id,
                    symbol="KO",
                    side=Side.BUY,
                    type=OrderType.LIMIT,
                    quantity="1",
                    limit_price="100",
                    time_in_force=TimeInForce.GTC,
                )
                placed.append(await orders.place("bench", draft))
        for order in placed:
            quote = Quote("KO", Decimal("62.40"), Decimal(0), Decimal(0), datetime.now(UTC), "mock")
            began = time.perf_counter()
            filled = await orders.fill(order, quote)
            report.fill_ms.append((time.perf_counter() - began) * 1000)
            assert filled is not None and filled.status is OrderStatus.FILLED
    finally:
        await market.close()
        await db.close()


def run_orders(settings: OrderSettings) -> OrderReport:
    report = OrderReport(settings)
    run_matching(settings, report)
    if settings.fills:
        from tests.conftest import migrated_sqlite

        with tempfile.TemporaryDirectory(prefix="bench-orders-") as folder:
            url = migrated_sqlite("portfolio", Path(folder) / "orders.db")  # before the loop
            asyncio.run(_fills(settings, report, url))
    return report


def print_orders(report: OrderReport) -> None:
    s = report.settings
    steps = report.per_step_ms
    p50, p99 = percentile(steps, 0.5), percentile(steps, 0.99)
    print()
    print(f"order matching per market step ({s.orders:,} open orders, {s.symbols} symbols moving)")
    print(f"  index built in {report.build_seconds:.2f} s")
    print(
        f"  p50 {p50:.3f} ms   p99 {p99:.3f} ms   mean {statistics.fmean(steps):.3f} ms"
        f"   max {max(steps):.3f} ms   over {len(steps)} steps"
    )
    print(f"  crossed {report.crossed / len(steps):.2f} orders a step on average")
    if report.fill_ms:
        fills = report.fill_ms
        print(
            f"  one fill end to end on SQLite (trade + FILLED in one transaction): p50"
            f" {percentile(fills, 0.5):.2f} ms   p99 {percentile(fills, 0.99):.2f} ms"
            f"   over {len(fills)} fills"
        )


if __name__ == "__main__":
    print_orders(run_orders(OrderSettings()))
