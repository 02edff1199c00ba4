"""GetPerformance: a portfolio's trades and daily closes (stored, and fetched from the market for
the symbols it held) into performance.performance_report."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from services.portfolio.performance import PerformanceReport, performance_report, range_start
from services.portfolio.prices import Prices
from services.portfolio.records import portfolio_not_found, require_portfolio_id
from services.portfolio.repository import PortfolioRepository, TradeRepository
from services.runtime.clock import utc_now
from services.runtime.db import Database


class Reports:
    def __init__(
        self, db: Database, prices: Prices, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._db = db
        self._prices = prices
        self._clock = clock

    async def performance(self, user_id: str, portfolio_id: str, range_: str) -> PerformanceReport:
        portfolio_id = require_portfolio_id(portfolio_id)
        today = self._clock().astimezone(UTC).date()
        range_start(range_, today)  # a bad range is refused before any work
        async with self._db.reading() as session:
            portfolio = await PortfolioRepository(session).get(portfolio_id, user_id)
            if portfolio is None:
                raise portfolio_not_found(portfolio_id)
            trades = [r.trade for r in await TradeRepository(session).of(portfolio_id)]
        inception = min((t.day for t in trades), default=None)
        start = range_start(range_, today, inception=inception)
        held = {t.symbol for t in trades if t.side.trades_shares}
        history = await self._prices.history(held, start, today)
        # CPU-bound over years of days: off the event loop.
        return await asyncio.to_thread(
            performance_report,
            trades,
            history,
            range_=range_,
            today=today,
            policy=portfolio.kind.policy,
        )
