"""One revaluation round of the portfolio calculator (services/portfolio/calculator.py) as the
market leader runs it every PORTFOLIO_REVALUE_INTERVAL, over 1,000 and 10,000 stored portfolios
of ~20 trades each in eight listings, stored as the service stores them (bench/market_splits.py
loads them the same way). The calculator is built as server.py builds it, over the simulated
market, without the split and dividend jobs (bench/market_splits.py measures the split round):
what is measured is `revalue_all`, every portfolio valued at the market's prices and its value
published (to no subscriber), and the day's closes recorded.

Three cases per size: a leader's first round (a new calculator: nothing kept from a round
before); a round with nothing changed since the last but the prices (most rounds); one after
1% of the books changed (a trade recorded in each). Each round is timed as wall time, CPU time
of the loop's thread, and the longest stretch the loop was held (bench/market_splits.py's
sampler). Then what the calculator keeps between rounds, measured with tracemalloc: the memory
a calculator holds after a round, less what it holds once dropped.
"""

from __future__ import annotations

import gc
import tracemalloc
from dataclasses import dataclass, field
from datetime import timedelta

from bench.market_splits import (
    DATABASES,
    SEED,
    Case,
    Clock,
    SplitRoundSettings,
    book_bytes,
    change_some,
    each_database_and_size,
    lag_sampler,
    load,
    print_round_cases,
)
from services.portfolio.calculator import Calculator
from services.portfolio.events import EventHub
from services.portfolio.mock_market import MockMarket
from services.portfolio.prices import Prices
from services.runtime.db import Database


@dataclass(frozen=True)
class RevaluationSettings:
    sizes: tuple[int, ...] = (1_000, 10_000)
    trades: int = 20
    runs: int = 5
    changed_share: float = 0.01
    databases: tuple[str, ...] = ("sqlite",)
    seed: int = 16


@dataclass
class RevaluationReport:
    settings: RevaluationSettings
    cases: list[Case] = field(default_factory=list)
    book_bytes: dict[int, float] = field(default_factory=dict)
    kept_bytes: dict[int, int] = field(default_factory=dict)


def describe_revaluation(settings: RevaluationSettings) -> str:
    sizes = " and ".join(f"{n:,}" for n in settings.sizes)
    return (
        f"revaluation: one calculator round over {sizes} stored portfolios of"
        f" ~{settings.trades} trades, {settings.runs} runs per case"
        f" ({', '.join(DATABASES[d] for d in settings.databases)}; in-process)"
    )


def build_calculator(db: Database, market: MockMarket, clock: Clock) -> Calculator:
    """As server.py builds it, without the split and dividend jobs (and no shared cache:
    nothing is published between replicas)."""
    return Calculator(db, Prices(db, market), EventHub(None), interval=3600, clock=clock)


async def timed_round(case: Case, calculator: Calculator, size: int) -> None:
    async with lag_sampler() as longest:
        with case.calls.timing():
            valued = await calculator.revalue_all()
    if valued != size:
        raise AssertionError(f"{valued} portfolios valued, not {size}")
    case.held_ms.append(longest[0])


async def kept_between_rounds(db: Database, market: MockMarket, clock: Clock, size: int) -> int:
    """Bytes a calculator keeps after a round (tracemalloc: what it holds, less what is left
    once it is dropped)."""
    gc.collect()
    tracemalloc.start()
    try:
        calculator = build_calculator(db, market, clock)
        await calculator.revalue_all()
        gc.collect()
        holding, _ = tracemalloc.get_traced_memory()
        del calculator
        gc.collect()
        dropped, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return holding - dropped


async def run_size(
    url: str, name: str, size: int, settings: RevaluationSettings, report: RevaluationReport
) -> None:
    db = Database(url)
    clock = Clock()
    market = MockMarket(seed=SEED, interval=3600, clock=clock)
    label = f"{DATABASES[name]}, {size:,}"
    loading = SplitRoundSettings(trades=settings.trades, seed=settings.seed)
    try:
        stored = await load(db, loading, size, clock.now)
        report.book_bytes[size] = await book_bytes(db)
        first = Case(f"{label}: first round", size)
        steady = Case(f"{label}: nothing changed", size)
        changed = Case(f"{label}: {settings.changed_share:.0%} changed", size)
        for _ in range(settings.runs):
            await timed_round(first, build_calculator(db, market, clock), size)
        calculator = build_calculator(db, market, clock)
        await calculator.revalue_all()
        for _ in range(settings.runs):
            clock.now += timedelta(minutes=1)
            await timed_round(steady, calculator, size)
        for _ in range(settings.runs):
            clock.now += timedelta(minutes=1)
            await change_some(db, stored, settings.changed_share, clock.now)
            await timed_round(changed, calculator, size)
        del calculator
        report.cases.extend((first, steady, changed))
        report.kept_bytes[size] = await kept_between_rounds(db, market, clock, size)
    finally:
        await db.close()


def run_revaluation(settings: RevaluationSettings) -> RevaluationReport:
    report = RevaluationReport(settings)

    async def run(url: str, name: str, size: int) -> None:
        await run_size(url, name, size, settings, report)

    each_database_and_size(settings.databases, settings.sizes, run)
    return report


def print_revaluation(report: RevaluationReport) -> None:
    print_round_cases(
        "Revaluation round on the leader (in-process: Calculator.revalue_all)",
        report.book_bytes,
        report.settings.runs,
        report.cases,
    )
    kept = ", ".join(
        f"{n:,}: {b / 2**20:,.1f} MB ({b / n:,.0f} B a portfolio)"
        for n, b in report.kept_bytes.items()
    )
    print(f"  kept by the calculator between rounds (tracemalloc): {kept}")


if __name__ == "__main__":
    settings = RevaluationSettings()
    print(describe_revaluation(settings), flush=True)
    print_revaluation(run_revaluation(settings))
