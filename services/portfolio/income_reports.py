"""GetPortfolioIncome: a portfolio's dividend income (income.py) from its trades and splits read
in one snapshot (books.py says why), with what its holdings are announced to pay next from the
market's dividend calendar, at today's rates."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from services.portfolio.books import history_of
from services.portfolio.currencies import ONE
from services.portfolio.domain import Book, CashPolicy, Split, Trade
from services.portfolio.exchange import Exchange
from services.portfolio.income import (
    Grouping,
    IncomeReport,
    Listing,
    Projection,
    Trailing,
    check_period_count,
    income_as_held,
    income_report,
    next_year,
    projected_income,
    received,
    trailing_income,
    trailing_year,
)
from services.portfolio.market_data import MarketData
from services.portfolio.periods import Period
from services.portfolio.records import require_portfolio_id
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import DomainError

Calendar = Callable[[date, date], Awaitable[dict[str, dict[date, Decimal]]]]

NO_CALENDAR = (
    "the market source announces no dividend calendar (Alpha Vantage gives none), so nothing"
    " is projected"
)


@dataclass(frozen=True)
class Income:
    """A portfolio's income report, its trailing twelve months and its projection; `note` says
    why the projection is empty or short, when it is."""

    portfolio_id: str
    currency: str
    report: IncomeReport
    trailing: Trailing
    projection: Projection
    note: str


def dividend_calendar(market: object) -> Calendar | None:
    """The market's dividend calendar, None when it has none: the simulated market has one, a
    provider (Alpha Vantage) none; the shared market says which of them it wraps."""
    calendar: Calendar | None = getattr(market, "dividend_calendar", None)
    if calendar is None or not getattr(market, "announces_dividends", True):
        return None
    return calendar


@dataclass(frozen=True, eq=False)
class IncomeReports:
    db: Database
    market: MarketData
    exchange: Exchange | None = None
    _: KW_ONLY
    clock: Callable[[], datetime] = utc_now

    async def income(
        self, user_id: str, portfolio_id: str, period: Period, grouping: Grouping
    ) -> Income:
        """The user's portfolio's dividend income in `period` grouped by `grouping`, the twelve
        months to `period.end` (absent or later: today) and the next twelve months' announced
        dividends (NotFound for another user's portfolio)."""
        portfolio_id = require_portfolio_id(portfolio_id)
        if period.start and period.end:  # refused before any reading
            check_period_count(period.start, period.end, grouping, blame="from")
        today = self.clock().astimezone(UTC).date()
        history = await history_of(self.db, user_id, portfolio_id)
        portfolio, recorded, splits = history.portfolio, history.recorded, history.splits
        currency = portfolio.base_currency
        policy = portfolio.kind.policy
        end = min(period.end or today, today)  # trailing months lie in the past

        def work() -> tuple[IncomeReport, Trailing, dict[str, Decimal]]:
            dividends = received(recorded, currency)
            trades = [r.trade for r in recorded]
            now = Book.replay(trades, splits=splits, policy=policy)
            then = now if end == today else _book_at_end_of(end, trades, splits, policy)
            basis = {s: then.position(s).cost_basis for s in then.open_symbols()}
            return (
                income_report(dividends, grouping, period),
                trailing_income(
                    dividends, end, basis, income_as_held(trades, splits, *trailing_year(end))
                ),
                {s: now.quantity(s) for s in now.open_symbols()},
            )

        report, trailing, holdings = await asyncio.to_thread(work)  # CPU-bound over years
        projection, note = await self._projection(holdings, currency, today)
        return Income(portfolio_id, currency, report, trailing, projection, note)

    async def _projection(
        self, holdings: Mapping[str, Decimal], currency: str, today: date
    ) -> tuple[Projection, str]:
        nothing = projected_income({}, {}, {}, today)
        calendar = dividend_calendar(self.market)
        if calendar is None:
            return nothing, NO_CALENDAR
        if not holdings:
            return nothing, ""
        try:
            announced = await calendar(*next_year(today))
        except DomainError as problem:
            return nothing, f"the market's dividend calendar cannot be read now: {problem.message}"
        listings: dict[str, Listing] = {}
        for symbol in sorted(holdings.keys() & announced.keys()):
            listing = await self._listing(symbol, currency)
            if listing is not None:
                listings[symbol] = listing
        projection = projected_income(holdings, announced, listings, today)
        note = ""
        if projection.unpriced:
            note = (
                f"not projected: {', '.join(projection.unpriced)}, whose currency or today's rate"
                " the market cannot give now"
            )
        return projection, note

    async def _listing(self, symbol: str, currency: str) -> Listing | None:
        """`symbol`'s trading currency and today's rate into `currency`; None when the market
        cannot say now (a guess would project dollars as yen)."""
        if self.exchange is None:
            return Listing(currency, ONE)
        try:
            trading = await self.exchange.currency_of(symbol, currency)
            if trading == currency:
                return Listing(trading, ONE)
            return Listing(trading, (await self.exchange.rate(trading, currency)).rate)
        except DomainError:
            return None


def _book_at_end_of(
    day: date, trades: Sequence[Trade], splits: Sequence[Split], policy: CashPolicy
) -> Book:
    """The book as it stood at the end of `day` (UTC): the trades and splits before the next
    day began (a prefix of a history that holds, so it holds too)."""
    after = datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=UTC)
    return Book.replay(
        [t for t in trades if t.executed_at < after],
        splits=[s for s in splits if s.effective_at < after],
        policy=policy,
    )
