"""GetOverview of a user with the most portfolios (100, in the five currencies) of ~200 trades
each (buys, sells, dividends, deposits in 25 listings of five currencies, over two years), on
SQLite and PostgreSQL. Measured in-process on what the RPC runs (services/portfolio/
overview.py, `Overviews.overview`, then its message and its serialization), with the service's
own objects over the simulated market: the reads in one snapshot, the books, one quote per
symbol, the rates, the sums. The gRPC hop itself adds about 0.4 ms (FIELD-NOTES).

Two cases per database: every portfolio with its stored book (what trades leave), and none
(data from before the stored book: every trade read and replayed). Each call is timed as wall
time (the reads wait on the database) and CPU time of the process's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import update

from bench.measures import Timings
from bench.system import postgres_databases
from services.portfolio.book_states import StoredBook
from services.portfolio.currencies import CURRENCIES, SimulatedRates
from services.portfolio.domain import Book, CashPolicy, Side, Trade
from services.portfolio.events import EventHub
from services.portfolio.exchange import Exchange
from services.portfolio.mock_market import LISTINGS, MockMarket
from services.portfolio.orm import portfolios as portfolio_rows
from services.portfolio.overview import Overviews
from services.portfolio.overview_rpcs import overview_message
from services.portfolio.portfolios import Portfolios
from services.portfolio.prices import Prices
from services.portfolio.records import Portfolio, PortfolioKind, RecordedTrade
from services.portfolio.repository import PortfolioRepository, TradeRepository
from services.runtime.collector import freeze_startup_objects
from services.runtime.db import Database
from services.runtime.errors import DomainError
from services.runtime.migrations import upgrade

DATABASES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
SEED = 42
# Listings of every currency the service keeps: 20 dollar ones and the five others.
DOLLARS = [listing.symbol for listing in LISTINGS if listing.currency == "USD"]
SYMBOLS = (*DOLLARS[:20], "SAP", "ASML", "NESN", "SHEL", "7203")


@dataclass(frozen=True)
class OverviewSettings:
    portfolios: int = 100
    trades: int = 200
    runs: int = 20
    databases: tuple[str, ...] = ("sqlite", "postgresql")
    seed: int = 16


@dataclass
class Case:
    label: str
    calls: Timings = field(default_factory=Timings)
    size: int = 0


@dataclass
class OverviewReport:
    settings: OverviewSettings
    cases: list[Case] = field(default_factory=list)
    recorded: int = 0
    holdings: int = 0


def describe_overview(settings: OverviewSettings) -> str:
    return (
        f"overview: GetOverview of {settings.portfolios} portfolios of ~{settings.trades}"
        f" trades each in {len(CURRENCIES)} currencies, {settings.runs} runs per case"
        f" ({', '.join(DATABASES[d] for d in settings.databases)}; in-process)"
    )


def history(settings: OverviewSettings, index: int, currency: str, now: datetime) -> list[Trade]:
    """One portfolio's trades, in its currency, that its book takes (oldest first)."""
    rng = random.Random(f"{settings.seed}:{index}")
    rates = SimulatedRates(SEED)
    book = Book(CashPolicy.FUND_SHORTFALL)
    start = now - timedelta(days=730)
    days = sorted(start + timedelta(days=rng.randrange(730)) for _ in range(settings.trades))
    trades: list[Trade] = []
    for sequence, when in enumerate(days, start=1):
        roll, symbol = rng.random(), rng.choice(SYMBOLS)
        listed = next(x for x in LISTINGS if x.symbol == symbol)
        rate = rates.close(listed.currency, currency, when.date())[1]
        price = (listed.open_price * Decimal(str(rng.uniform(0.7, 1.3))) * rate).quantize(
            Decimal("0.000001")
        )
        if roll < 0.08:
            amount = Decimal(rng.randint(10, 100) * 100)
            trade = Trade(Side.DEPOSIT, "", amount, Decimal(1), Decimal(0), when, sequence)
        elif roll < 0.15 and book.quantity(symbol) > 0:
            per_share = (Decimal("0.31") * rate).quantize(Decimal("0.000001"))
            held = book.quantity(symbol)
            trade = Trade(Side.DIVIDEND, symbol, held, per_share, Decimal(0), when, sequence)
        else:
            held = book.quantity(symbol)
            side = Side.SELL if roll > 0.7 and held > 0 else Side.BUY
            quantity = Decimal(rng.randint(1, 20)) if side is Side.BUY else min(held, Decimal(5))
            trade = Trade(side, symbol, quantity, price, Decimal("1.5"), when, sequence)
        try:
            book.record(trade)
        except DomainError:
            continue
        trades.append(trade)
    return trades


async def load(db: Database, settings: OverviewSettings, user_id: str, now: datetime) -> int:
    """The user's portfolios and their trades, each with its stored book; trades recorded."""
    recorded = 0
    for index in range(settings.portfolios):
        currency = CURRENCIES[index % len(CURRENCIES)]
        created = now - timedelta(days=800) + timedelta(seconds=index)
        portfolio = Portfolio(
            str(uuid.uuid4()),
            user_id,
            f"P{index:03d}",
            "",
            currency,
            PortfolioKind.TRACKING,
            created,
            created,
        )
        trades = history(settings, index, currency, now)
        book = Book.replay(trades)
        rows = [RecordedTrade(portfolio.id, replace(t, id=str(uuid.uuid4())), now) for t in trades]
        async with db.transaction() as session:
            await PortfolioRepository(session).add(portfolio)
            await TradeRepository(session).add(rows)
            await PortfolioRepository(session).save_book(
                portfolio.id, StoredBook(book.state(), len(trades))
            )
        recorded += len(trades)
    return recorded


async def measure(
    settings: OverviewSettings,
    label: str,
    report: OverviewReport,
    overviews: Overviews,
    user_id: str,
) -> None:
    case = Case(label)
    for run in range(settings.runs + 1):
        # The first warms the caches (listings' currencies, rates).
        with case.calls.timing(keep=run > 0):
            found = await overviews.overview(user_id, "USD")
            size = len(overview_message(found).SerializeToString())
        if run == 0:
            continue
        case.size = size
        assert len(found.portfolios) == settings.portfolios
        report.holdings = len(found.holdings)
    report.cases.append(case)


@contextlib.contextmanager
def database_url(name: str) -> Iterator[str]:
    if name == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite+aiosqlite:///{Path(folder) / 'portfolio.db'}"
        return
    with postgres_databases(("portfolio",)) as urls:
        yield urls["portfolio"]


@contextlib.asynccontextmanager
async def service(url: str) -> AsyncIterator[tuple[Database, Overviews]]:
    db = Database(url)
    market = MockMarket(seed=SEED, interval=3600)
    try:
        exchange = Exchange(db, market)
        portfolios = Portfolios(db, Prices(db, market, exchange), EventHub(None))
        yield db, Overviews(portfolios, exchange)
    finally:
        await db.close()


async def run_on(url: str, name: str, settings: OverviewSettings, report: OverviewReport) -> None:
    async with service(url) as (db, overviews):
        user_id = str(uuid.uuid4())
        report.recorded = await load(db, settings, user_id, datetime.now(UTC))
        label = DATABASES[name]
        await measure(settings, f"{label}, stored books", report, overviews, user_id)
        async with db.transaction() as session:  # as data from before the stored book
            await session.execute(update(portfolio_rows).values(book=None))
        await measure(settings, f"{label}, replayed", report, overviews, user_id)


def run_overview(settings: OverviewSettings) -> OverviewReport:
    freeze_startup_objects()  # as the service does once started
    report = OverviewReport(settings)
    for name in settings.databases:
        with database_url(name) as url:
            upgrade("portfolio", url)  # runs its own event loop
            asyncio.run(run_on(url, name, settings, report))
    return report


def print_overview(report: OverviewReport) -> None:
    s = report.settings
    print()
    print("GetOverview of all portfolios (in-process: reads, valuation, sums, message)")
    print(
        f"  {s.portfolios} portfolios, {report.recorded:,} trades in all (per database),"
        f" {report.holdings} symbols held across them"
    )
    for case in report.cases:
        wall, cpu = case.calls.wall_ms, case.calls.cpu_ms
        print(
            f"  {case.label:<28} wall median {statistics.median(wall):7.1f} ms"
            f"  max {max(wall):7.1f} ms   CPU median {statistics.median(cpu):7.1f}"
            f" ms   answer {case.size / 1024:.0f} KB"
        )


if __name__ == "__main__":
    settings = OverviewSettings()
    print(describe_overview(settings), flush=True)
    print_overview(run_overview(settings))
