"""The portfolio calculator: every `interval` seconds, revalue every portfolio that holds
positions at current prices (from its stored book: no replay), publish a `portfolio_value`
event for each, and record each held symbol's latest price as today's close in the price
history.

Each round reads every stored book's text and digests it; only a book whose text differs from
what the last round read is decoded (decoded_books.py, as the market-split round does): what its
totals need (BookFigures: sums, held shares, bases) is kept per portfolio from round to round,
so a round in which only prices moved decodes none. The text in the database decides, not an
event: a trade recorded on another replica is in the next round's values. What is kept is
bounded (KEEP_BYTES_AT_MOST); a replica that stops leading keeps none.

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

from services.portfolio.decoded_books import DecodedBooks
from services.portfolio.dividends import DividendPayer
from services.portfolio.domain import Book, BookFigures
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
# The memory the figures kept between rounds may take, estimated as KEPT_BYTES: a portfolio's
# sums, digest and place, and each listing it holds (measured with tracemalloc, bench --only
# revaluation: 32.5 MB at 10,000 portfolios holding 7.4 listings on average, 3.4 KB each).
# Portfolios past the bound (about 19,000 of that kind) are decoded every round, as before.
KEEP_BYTES_AT_MOST = 64 << 20
KEPT_BYTES = (1_350, 280)  # a portfolio, and each listing held


def kept_bytes(figures: BookFigures) -> int:
    portfolio, listing = KEPT_BYTES
    return portfolio + listing * len(figures.held)


def kept_figures() -> DecodedBooks[BookFigures]:
    """What the calculator keeps of each stored book between rounds: its totals' figures."""
    return DecodedBooks(
        lambda book: BookFigures.of_state(book.state),
        keep_at_most=KEEP_BYTES_AT_MOST,
        weight=kept_bytes,
    )


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
        books: DecodedBooks[BookFigures] | None = None,
    ) -> None:
        """`books`: what is kept of each stored book between rounds (default `kept_figures()`)."""
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
        self._books = kept_figures() if books is None else books
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
        books = self._books.round()
        while True:
            # One snapshot: a replay's trades and splits must agree (books.py).
            async with self._db.snapshot() as session:
                repository = PortfolioRepository(session)
                batch = await repository.after(after, self._batch)
                # The stored books (trades.py keeps one per portfolio), decoded only when
                # changed since the last round; only a portfolio without one has its trades
                # read and replayed.
                stored = books.read(await repository.book_texts([p.id for p in batch]))
                missing = [p.id for p in batch if p.id not in stored]
                trades = await TradeRepository(session).of_many(missing) if missing else {}
                splits = await splits_by_portfolio(session, missing) if missing else {}
            if not batch:
                break
            after = batch[-1].id
            valuing: list[tuple[str, str, str, BookFigures]] = []
            held: set[str] = set()
            for portfolio in batch:
                figures = stored.get(portfolio.id)
                if figures is None:
                    try:
                        figures = Book.replay(
                            [r.trade for r in trades[portfolio.id]],
                            splits=splits[portfolio.id],
                            policy=portfolio.kind.policy,
                        ).figures()
                    except DomainError as problem:  # stored trades that no longer replay
                        log.error(
                            "portfolio does not replay",
                            extra={"portfolioId": portfolio.id, "why": problem.message},
                        )
                        continue
                symbols = figures.open_symbols()
                if symbols:
                    held.update(symbols)
                    valuing.append(
                        (portfolio.user_id, portfolio.id, portfolio.base_currency, figures)
                    )
            found = await self._prices.quotes(held - quotes.keys())
            quotes.update(found)
            prices.update((symbol, quote.price) for symbol, quote in found.items())
            in_currency: dict[str, dict[str, Decimal]] = {}
            for user_id, portfolio_id, currency, figures in valuing:
                if currency not in in_currency:
                    in_currency[currency] = await self._converted(prices, currency)
                totals = figures.totals(in_currency[currency])
                await self._hub.portfolio_valued(user_id, portfolio_id, totals, now)
                valued += 1
        books.finish()  # every portfolio read: those deleted since are forgotten
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
                else:
                    self._books.forget()  # the leader's memory, not a follower's
            except asyncio.CancelledError:
                raise
            except Exception:  # one failed round (database down) must not end the job
                log.exception("portfolio revaluation failed")
