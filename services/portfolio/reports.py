"""GetPerformance: a portfolio's trades and daily closes (stored, and fetched from the market for
the symbols it held) into performance.performance_report, in the portfolio's currency: closes of
holdings listed in another currency converted at each day's rate (exchange.py), and, when asked
for, a benchmark's closes converted the same way."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal

from services.portfolio.books import history_of
from services.portfolio.domain import Trade, normalize_symbol
from services.portfolio.exchange import Exchange
from services.portfolio.performance import PerformanceReport, performance_report, range_start
from services.portfolio.prices import Prices
from services.portfolio.records import require_portfolio_id
from services.portfolio.returns import converted_closes
from services.portfolio.risk import parse_risk_free_rate
from services.runtime.clock import utc_now
from services.runtime.db import Database


class Reports:
    def __init__(
        self,
        db: Database,
        prices: Prices,
        *,
        clock: Callable[[], datetime] = utc_now,
        exchange: Exchange | None = None,
    ) -> None:
        self._db = db
        self._prices = prices
        self._clock = clock
        self._exchange = exchange

    async def performance(
        self,
        user_id: str,
        portfolio_id: str,
        range_: str,
        benchmark: str = "",
        risk_free_rate: str = "",
    ) -> PerformanceReport:
        portfolio_id = require_portfolio_id(portfolio_id)
        today = self._clock().astimezone(UTC).date()
        range_start(range_, today)  # a bad range is refused before any work
        yearly_rate = parse_risk_free_rate(risk_free_rate)
        benchmark = normalize_symbol(benchmark) if benchmark.strip() else ""
        read = await history_of(self._db, user_id, portfolio_id)
        portfolio, recorded, splits = read.portfolio, read.recorded, read.splits
        currency = portfolio.base_currency
        trades = read.trades
        inception = min((t.day for t in trades), default=None)
        start = range_start(range_, today, inception=inception)
        held = {t.symbol for t in trades if t.side.trades_shares}
        # A symbol's trading currency is the one its trades were recorded in.
        listed = {r.trade.symbol: r.fx.currency for r in recorded if r.fx and r.trade.symbol}
        trade_rates: dict[Trade, Decimal] = {r.trade: r.fx.rate for r in recorded if r.fx}
        if benchmark:
            # An unknown benchmark is NotFound (404), as an unknown symbol anywhere.
            await self._prices.check_listed(benchmark)
            if self._exchange is not None:
                listed[benchmark] = await self._exchange.currency_of(benchmark, currency)
        wanted = held | ({benchmark} if benchmark else set())
        history = await self._prices.history(wanted, start, today)
        rates: dict[str, dict[date, Decimal]] = {}
        if self._exchange is not None:
            foreign = {c for s, c in listed.items() if c != currency}
            by_currency = await self._exchange.rates_on(foreign, currency, start, today)
            rates = {s: by_currency[c] for s, c in listed.items() if c in by_currency}
        converted = {s: converted_closes(c, rates.get(s)) for s, c in history.items()}
        marks = (benchmark, converted.get(benchmark, {})) if benchmark else None
        if benchmark and benchmark not in held:
            converted.pop(benchmark, None)
        # CPU-bound over years of days: off the event loop.
        return await asyncio.to_thread(
            performance_report,
            trades,
            converted,
            range_=range_,
            today=today,
            splits=splits,
            policy=portfolio.kind.policy,
            rates={s: r for s, r in rates.items() if s in held},
            trade_rates=trade_rates,
            benchmark_marks=marks,
            currency=currency,
            risk_free_rate=yearly_rate,
        )
