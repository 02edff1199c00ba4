"""ListRealizedGains: what every sale of a period realized, lot by lot (a tax report, as brokers'
Form 8949 rows), from the book's own replay of the portfolio's trades and splits.

The rows are the book's sales (`Book.sales`), so they take splits and currencies exactly as
positions' realized gain does: the trades are stored converted into the portfolio's currency at
their day's rate, lots keep their buy's time and cost through splits, and a split's cash in lieu
is a sale too. Nothing is rounded here: under either method the rows' gains over all time add up
exactly to the book's realized gain, and the presented figures are each rounded once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date
from decimal import Decimal

from services.portfolio.books import history_of
from services.portfolio.domain import ZERO, Book, CostMethod, Sale
from services.portfolio.exact import minus, plus
from services.portfolio.periods import Period, anniversary
from services.portfolio.periods import period_of as period_of  # re-exported: its request
from services.portfolio.records import require_portfolio_id
from services.runtime.db import Database
from services.runtime.pagination import Page


@dataclass(frozen=True)
class RealizedRow:
    """One sale's gain on one lot (FIFO: `acquired_on`, `holding_days`, `long_term` set), or
    on all the shares it sold (average method: they are None)."""

    symbol: str
    trade_id: str
    sold_on: date
    quantity: Decimal
    proceeds: Decimal
    cost_basis: Decimal
    gain: Decimal
    cash_in_lieu: bool
    acquired_on: date | None = None
    holding_days: int | None = None

    @property
    def long_term(self) -> bool | None:
        """Held more than one year, as the IRS counts it: sold after the first anniversary of
        the buy's day (on it is still short-term; a buy on 29 February has its anniversary on
        the 28th)."""
        if self.acquired_on is None:
            return None
        return self.sold_on > anniversary(self.acquired_on)


@dataclass(frozen=True)
class RealizedTotals:
    """Sums of a period's rows, exact; short and long term are None under the average method."""

    proceeds: Decimal
    cost_basis: Decimal
    gain: Decimal
    short_term: Decimal | None
    long_term: Decimal | None


@dataclass(frozen=True)
class RealizedReport:
    method: CostMethod
    rows: tuple[RealizedRow, ...]
    totals: RealizedTotals


def realized_report(sales: Iterable[Sale], method: CostMethod, period: Period) -> RealizedReport:
    """The rows of the sales made in `period` (by their UTC day), in replay order, and their
    totals."""
    rows = tuple(row for sale in sales if sale.day in period for row in _rows(sale, method))
    return RealizedReport(method, rows, _totals(rows, method))


def _rows(sale: Sale, method: CostMethod) -> Iterator[RealizedRow]:
    if method is CostMethod.AVERAGE:
        yield RealizedRow(
            sale.symbol,
            sale.trade_id,
            sale.day,
            quantity=sale.quantity,
            proceeds=sale.proceeds,
            cost_basis=sale.average_cost,
            gain=minus(sale.proceeds, sale.average_cost),
            cash_in_lieu=sale.in_lieu,
        )
        return
    # Each lot takes its part of the proceeds by quantity; the last takes what is left, so the
    # parts add up to the proceeds exactly.
    left = sale.proceeds
    for index, lot in enumerate(sale.lots):
        last = index == len(sale.lots) - 1
        proceeds = left if last else sale.proceeds * lot.quantity / sale.quantity
        left = minus(left, proceeds)
        acquired = lot.opened_at.astimezone(UTC).date()
        yield RealizedRow(
            sale.symbol,
            sale.trade_id,
            sale.day,
            quantity=lot.quantity,
            proceeds=proceeds,
            cost_basis=lot.cost,
            gain=minus(proceeds, lot.cost),
            cash_in_lieu=sale.in_lieu,
            acquired_on=acquired,
            holding_days=(sale.day - acquired).days,
        )


def _totals(rows: tuple[RealizedRow, ...], method: CostMethod) -> RealizedTotals:
    proceeds = cost = gain = short = long = ZERO
    for row in rows:
        proceeds = plus(proceeds, row.proceeds)
        cost = plus(cost, row.cost_basis)
        gain = plus(gain, row.gain)
        if row.long_term:
            long = plus(long, row.gain)
        else:
            short = plus(short, row.gain)
    termed = method is CostMethod.FIFO
    return RealizedTotals(proceeds, cost, gain, short if termed else None, long if termed else None)


@dataclass(frozen=True)
class RealizedPage:
    """One page of a report's rows, the number of rows in all, its totals and currency."""

    rows: tuple[RealizedRow, ...]
    total: int
    report: RealizedReport
    currency: str


class RealizedGains:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def page(
        self,
        user_id: str,
        portfolio_id: str,
        period: Period,
        method: CostMethod,
        page: Page,
    ) -> RealizedPage:
        """The user's portfolio's realized gains in `period` (NotFound for another's)."""
        portfolio_id = require_portfolio_id(portfolio_id)
        history = await history_of(self._db, user_id, portfolio_id)
        portfolio, trades, splits = history.portfolio, history.trades, history.splits

        def report() -> RealizedReport:
            # The whole history: a stored book state keeps no sales.
            book = Book.replay(trades, splits=splits, policy=portfolio.kind.policy, sales=True)
            return realized_report(book.sales, method, period)

        found = await asyncio.to_thread(report)  # CPU-bound over years of trades
        shown = found.rows[page.offset : page.offset + page.limit]
        return RealizedPage(shown, len(found.rows), found, portfolio.base_currency)
