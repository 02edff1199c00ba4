"""The portfolio calculator: every `interval` seconds, revalue every portfolio that holds
positions at current prices (from its stored book: no replay), publish a `portfolio_value`
event for each, and record each held symbol's latest price as today's close in the price
history.

The job runs once per deployment, not once per replica: only the replica leading the shared
market (shared_market.py) revalues, and its events reach the other replicas' subscribers through
the hub.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from services.portfolio.dividends import DividendPayer
from services.portfolio.domain import Book
from services.portfolio.events import EventHub
from services.portfolio.market_data import Quote
from services.portfolio.market_splits import SplitApplier
from services.portfolio.prices import Prices
from services.portfolio.repository import (
    PortfolioRepository,
    TradeRepository,
    splits_by_portfolio,
)
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import DomainError
from services.runtime.tasks import cancel_and_wait

log = logging.getLogger(__name__)

BATCH = 200


class Calculator:
    def __init__(
        self,
        db: Database,
        prices: Prices,
        hub: EventHub,
        *,
        interval: float,
        leading: Callable[[], bool] = lambda: True,
        clock: Callable[[], datetime] = utc_now,
        batch: int = BATCH,
        dividends: DividendPayer | None = None,
        splits: SplitApplier | None = None,
    ) -> None:
        self._db = db
        self._prices = prices
        self._hub = hub
        self._leading = leading
        self._interval = interval
        self._clock = clock
        self._batch = batch
        # Pays the market's dividends to paper portfolios, on the leader too (dividends.py).
        self._dividends = dividends
        # Records the market's splits in the portfolios that held the stock (market_splits.py),
        # before the dividends: a dividend is per share as they trade on its ex-date.
        self._splits = splits
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run_forever(), name="portfolio-calculator")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def revalue_all(self) -> int:
        """One revaluation of every portfolio with positions; returns how many were valued."""
        now = self._clock()
        quotes: dict[str, Quote] = {}
        prices: dict[str, Decimal] = {}
        valued = 0
        after = ""
        while True:
            # One snapshot: a replay's trades and splits must agree (books.py).
            async with self._db.snapshot() as session:
                repository = PortfolioRepository(session)
                batch = await repository.after(after, self._batch)
                # The stored books (trades.py keeps one per portfolio); only a portfolio
                # without one has its trades read and replayed.
                stored = await repository.books([p.id for p in batch])
                missing = [p.id for p in batch if p.id not in stored]
                trades = await TradeRepository(session).of_many(missing) if missing else {}
                splits = await splits_by_portfolio(session, missing) if missing else {}
            if not batch:
                break
            after = batch[-1].id
            books: list[tuple[str, str, str, Book]] = []
            for portfolio in batch:
                try:
                    if portfolio.id in stored:
                        book = Book.resume(stored[portfolio.id].state)
                    else:
                        book = Book.replay(
                            [r.trade for r in trades[portfolio.id]],
                            splits=splits[portfolio.id],
                            policy=portfolio.kind.policy,
                        )
                except DomainError as problem:  # stored trades that no longer replay
                    log.error(
                        "portfolio does not replay",
                        extra={"portfolioId": portfolio.id, "why": problem.message},
                    )
                    continue
                if book.open_symbols():
                    books.append((portfolio.user_id, portfolio.id, portfolio.base_currency, book))
            held = {s for *_, book in books for s in book.open_symbols()}
            found = await self._prices.quotes(held - quotes.keys())
            quotes.update(found)
            prices.update((symbol, quote.price) for symbol, quote in found.items())
            in_currency: dict[str, dict[str, Decimal]] = {}
            for user_id, portfolio_id, currency, book in books:
                if currency not in in_currency:
                    in_currency[currency] = await self._converted(prices, currency)
                totals = book.totals(in_currency[currency])
                await self._hub.portfolio_valued(user_id, portfolio_id, totals, now)
                valued += 1
        await self._prices.record_latest(quotes.values())
        return valued

    async def _converted(self, prices: dict[str, Decimal], currency: str) -> dict[str, Decimal]:
        """Prices in `currency`: a holding listed in another converted at today's rate."""
        exchange = self._prices.exchange
        if exchange is None:
            return prices
        converted = await exchange.convert(prices, currency)
        return {symbol: price for symbol, (price, _, _) in converted.items()}

    async def _record_market_splits(self) -> None:
        if self._splits is None:
            return
        try:
            await self._splits.apply_due()
        except asyncio.CancelledError:
            raise
        except Exception:  # the round's revaluation and dividends still run
            log.exception("market splits not recorded")

    async def _run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                if self._leading():
                    await self._record_market_splits()
                    if self._dividends is not None:
                        await self._dividends.pay_due()
                    await self.revalue_all()
            except asyncio.CancelledError:
                raise
            except Exception:  # one failed round (database down) must not end the job
                log.exception("portfolio revaluation failed")
