"""One round of the market-split applier (services/portfolio/market_splits.py) as the market
leader runs it with every revaluation, over 1,000 and 10,000 stored portfolios of ~20 trades
each in eight listings, stored as the service stores them (the repository's add, trades and
save_book). The applier is built as server.py builds it, over the simulated market; its
portfolios hold no listing that splits (SPLIT_PLAN's), so no round records a split and what is
measured is the change check and the held symbols, what every round pays.

Four cases per size: a leader's first round (a new applier: nothing known, every portfolio
looked at in full); a round with nothing changed since the last (most rounds); one after 1% of
the books changed (a trade recorded in each); and the once-a-day round that looks at every
portfolio in full. Each round is timed as wall time, CPU time of the loop's thread, and the
longest stretch the loop was held: a task beside it asks to wake every LAG_EVERY seconds and
keeps the longest wait past that (the market's step, every ~250 ms, waits as long).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from bench.measures import Timings
from bench.overview import database_url
from services.portfolio.book_states import StoredBook
from services.portfolio.domain import Book, CashPolicy, Side, Trade
from services.portfolio.events import EventHub
from services.portfolio.market_splits import SplitApplier
from services.portfolio.mock_market import LISTINGS, SPLIT_PLAN, MockMarket
from services.portfolio.order_desk import Orders
from services.portfolio.orm import portfolios as portfolio_rows
from services.portfolio.prices import Prices
from services.portfolio.records import Portfolio, PortfolioKind, RecordedTrade
from services.portfolio.repository import PortfolioRepository, TradeRepository
from services.portfolio.splits import Splits
from services.portfolio.trades import Trades
from services.runtime.collector import freeze_startup_objects
from services.runtime.db import Database
from services.runtime.errors import DomainError
from services.runtime.migrations import upgrade

DATABASES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
SEED = 42
SYMBOLS = [x.symbol for x in LISTINGS if x.currency == "USD" and x.symbol not in SPLIT_PLAN][:8]
# Portfolios stored per transaction while loading (set-up, not measured).
LOAD_BATCH = 250
LAG_EVERY = 0.002


@dataclass(frozen=True)
class SplitRoundSettings:
    sizes: tuple[int, ...] = (1_000, 10_000)
    trades: int = 20
    runs: int = 5
    changed_share: float = 0.01
    databases: tuple[str, ...] = ("sqlite",)
    seed: int = 16


@dataclass
class Case:
    label: str
    size: int
    calls: Timings = field(default_factory=Timings)
    held_ms: list[float] = field(default_factory=list)


@dataclass
class SplitRoundReport:
    settings: SplitRoundSettings
    cases: list[Case] = field(default_factory=list)
    book_bytes: dict[int, float] = field(default_factory=dict)


def describe_split_rounds(settings: SplitRoundSettings) -> str:
    sizes = " and ".join(f"{n:,}" for n in settings.sizes)
    return (
        f"split-rounds: one market-split round over {sizes} stored portfolios of"
        f" ~{settings.trades} trades, {settings.runs} runs per case"
        f" ({', '.join(DATABASES[d] for d in settings.databases)}; in-process)"
    )


class Clock:
    """The applier's clock, moved on by the bench (a round a minute, or a day on)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def history(settings: SplitRoundSettings, index: int, now: datetime) -> list[Trade]:
    rng = random.Random(f"{settings.seed}:{index}")
    book = Book(CashPolicy.FUND_SHORTFALL)
    start = now - timedelta(days=730)
    days = sorted(start + timedelta(days=rng.randrange(720)) for _ in range(settings.trades))
    trades: list[Trade] = []
    for sequence, when in enumerate(days, start=1):
        symbol = rng.choice(SYMBOLS)
        price = Decimal(rng.randint(5_000, 50_000)) / 100
        held = book.quantity(symbol)
        if rng.random() > 0.7 and held > 0:
            trade = Trade(Side.SELL, symbol, min(held, Decimal(3)), price, Decimal(1), when)
        else:
            quantity = Decimal(rng.randint(1, 20))
            trade = Trade(Side.BUY, symbol, quantity, price, Decimal(1), when)
        trade = replace(trade, sequence=sequence)
        try:
            book.record(trade)
        except DomainError:
            continue
        trades.append(trade)
    return trades


async def load(
    db: Database, settings: SplitRoundSettings, count: int, now: datetime
) -> list[Portfolio]:
    """`count` portfolios with their trades and stored books, as trades.py leaves them."""
    kept: list[Portfolio] = []
    for first in range(0, count, LOAD_BATCH):
        async with db.transaction() as session:
            portfolios, trades = PortfolioRepository(session), TradeRepository(session)
            for index in range(first, min(count, first + LOAD_BATCH)):
                created = now - timedelta(days=800)
                portfolio = Portfolio(
                    str(uuid.uuid4()),
                    f"user-{index % 500}",
                    f"P{index:05d}",
                    "",
                    "USD",
                    PortfolioKind.TRACKING,
                    created,
                    created,
                )
                made = history(settings, index, now)
                book = Book.replay(made)
                rows = [
                    RecordedTrade(portfolio.id, replace(t, id=str(uuid.uuid4())), now) for t in made
                ]
                await portfolios.add(portfolio)
                await trades.add(rows)
                await portfolios.save_book(portfolio.id, StoredBook(book.state(), len(made)))
                kept.append(portfolio)
    return kept


async def change_some(db: Database, stored: list[Portfolio], share: float, now: datetime) -> None:
    """A trade recorded in `share` of the portfolios, its book stored with it (not measured;
    the books are read back rather than kept: 10,000 books kept by the bench would be walked
    by every full collection in the round measured, as the service keeps none)."""
    rng = random.Random(len(stored))
    chosen = rng.sample(stored, max(1, round(len(stored) * share)))
    async with db.transaction() as session:
        portfolios = PortfolioRepository(session)
        for portfolio in chosen:
            found = await portfolios.with_book(portfolio.id, portfolio.user_id, lock=True)
            assert found is not None and found[1] is not None
            book, sequence = Book.resume(found[1].state), found[1].last_sequence + 1
            trade = Trade(
                Side.BUY, rng.choice(SYMBOLS), Decimal(1), Decimal(100), Decimal(0), now,
                sequence, str(uuid.uuid4()),
            )  # fmt: skip
            book.record(trade)
            await portfolios.save_book(
                portfolio.id,
                StoredBook(book.state(), sequence),
                [RecordedTrade(portfolio.id, trade, now)],
            )


@contextlib.asynccontextmanager
async def lag_sampler() -> AsyncIterator[list[float]]:
    """The longest the loop kept a task that asked to wake every LAG_EVERY seconds waiting past
    that, in ms (the list's one item, filled when the block ends)."""
    longest = [0.0]

    async def sample() -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(LAG_EVERY)
            late = time.perf_counter() - asked - LAG_EVERY
            longest[0] = max(longest[0], late * 1000)

    task = asyncio.create_task(sample())
    await asyncio.sleep(0)  # it is waiting before the round starts
    try:
        yield longest
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def timed_round(case: Case, applier: SplitApplier) -> None:
    async with lag_sampler() as longest:
        with case.calls.timing():
            applied = await applier.apply_due()
    if applied:
        raise AssertionError(f"the bench's portfolios hold no listing that splits: {applied}")
    case.held_ms.append(longest[0])


def build_applier(db: Database, market: MockMarket, clock: Clock) -> SplitApplier:
    """As server.py builds it (without a shared cache: nothing is published between replicas)."""
    hub = EventHub(None)
    prices = Prices(db, market)
    trades = Trades(db, market, prices, hub)
    splits = Splits(db, prices, hub, orders=Orders(db, trades, hub))
    return SplitApplier(db, market, splits, clock=clock)


async def book_bytes(db: Database) -> float:
    async with db.reading() as session:
        query = select(func.avg(func.length(portfolio_rows.c.book)))
        return float((await session.execute(query)).scalar_one())


async def run_size(
    url: str, name: str, size: int, settings: SplitRoundSettings, report: SplitRoundReport
) -> None:
    db = Database(url)
    clock = Clock()
    market = MockMarket(seed=SEED, interval=3600, clock=clock)
    label = f"{DATABASES[name]}, {size:,}"
    try:
        stored = await load(db, settings, size, clock.now)
        report.book_bytes[size] = await book_bytes(db)
        first = Case(f"{label}: first round", size)
        steady = Case(f"{label}: nothing changed", size)
        changed = Case(f"{label}: {settings.changed_share:.0%} changed", size)
        daily = Case(f"{label}: once a day, in full", size)
        for _ in range(settings.runs):
            await timed_round(first, build_applier(db, market, clock))
        applier = build_applier(db, market, clock)
        await applier.apply_due()
        for _ in range(settings.runs):
            clock.now += timedelta(minutes=1)
            await timed_round(steady, applier)
        for _ in range(settings.runs):
            clock.now += timedelta(minutes=1)
            await change_some(db, stored, settings.changed_share, clock.now)
            await timed_round(changed, applier)
        for _ in range(settings.runs):
            clock.now += timedelta(days=1)
            await timed_round(daily, applier)
        report.cases.extend((first, steady, changed, daily))
    finally:
        await db.close()


def each_database_and_size(
    databases: tuple[str, ...],
    sizes: tuple[int, ...],
    run: Callable[[str, str, int], Coroutine[Any, Any, None]],
) -> None:
    """`run(url, database name, size)` on a freshly migrated portfolio database for each pair
    (the leader's round parts: market splits, revaluation)."""
    freeze_startup_objects()  # as the service does once started
    for name in databases:
        for size in sizes:
            with database_url(name) as url:
                upgrade("portfolio", url)  # runs its own event loop
                asyncio.run(run(url, name, size))


def print_round_cases(
    title: str, book_sizes: dict[int, float], runs: int, cases: list[Case]
) -> None:
    """A leader's round part's table: each case's medians of wall, CPU and loop-held time."""
    print()
    print(title)
    sizes = ", ".join(f"{n:,}: {b:,.0f} B" for n, b in book_sizes.items())
    print(f"  stored book, mean size ({sizes}); medians of {runs} runs")
    print(f"  {'case':<36} {'wall ms':>9} {'CPU ms':>9} {'loop held ms':>13} {'(max)':>7}")
    for case in cases:
        wall, cpu = case.calls.wall_ms, case.calls.cpu_ms
        print(
            f"  {case.label:<36} {statistics.median(wall):9.1f} {statistics.median(cpu):9.1f}"
            f" {statistics.median(case.held_ms):13.1f} {max(case.held_ms):7.1f}"
        )


def run_split_rounds(settings: SplitRoundSettings) -> SplitRoundReport:
    report = SplitRoundReport(settings)

    async def run(url: str, name: str, size: int) -> None:
        await run_size(url, name, size, settings, report)

    each_database_and_size(settings.databases, settings.sizes, run)
    return report


def print_split_rounds(report: SplitRoundReport) -> None:
    print_round_cases(
        "Market-split round on the leader (in-process: SplitApplier.apply_due, no split due)",
        report.book_bytes,
        report.settings.runs,
        report.cases,
    )


if __name__ == "__main__":
    settings = SplitRoundSettings()
    print(describe_split_rounds(settings), flush=True)
    print_split_rounds(run_split_rounds(settings))
