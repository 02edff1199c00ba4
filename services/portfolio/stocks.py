"""Finding stocks: the market's matches for a search, a page at a time; a stock with its
profile; a stock's daily closes over a range."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from services.portfolio.market_data import MarketData, StockInfo
from services.portfolio.performance import months_before
from services.portfolio.prices import Prices
from services.portfolio.profiles import StockProfile, profile_or_unknown
from services.portfolio.trading import normalize_symbol
from services.runtime.clock import utc_now
from services.runtime.errors import InvalidArgument
from services.runtime.pagination import Page

# Enough for every match a market gives; a search pages through them.
MAX_SEARCH_RESULTS = 500
# A stock's history ranges, by the months each looks back ("ytd" is from the year's start).
HISTORY_MONTHS = {"1m": 1, "3m": 3, "6m": 6, "1y": 12, "5y": 60}
HISTORY_RANGES = ("1m", "3m", "6m", "1y", "ytd", "5y")
DEFAULT_HISTORY_RANGE = "1y"


async def search_stocks(market: MarketData, q: str, page: Page) -> tuple[list[StockInfo], int]:
    """One page of the stocks matching `q`, best matches first, and how many match."""
    found = await market.search(q, MAX_SEARCH_RESULTS)
    return found[page.offset : page.offset + page.limit], len(found)


async def stock_details(market: MarketData, symbol: str) -> tuple[StockInfo, StockProfile]:
    """The listing (NotFound for an unknown symbol) and its profile, "Unknown" where the
    market cannot give it now (its budget spent): the listing is still worth showing."""
    stock = await market.stock(symbol)
    return stock, await profile_or_unknown(market, stock.symbol)


@dataclass(frozen=True)
class StockHistory:
    """A stock's daily closes over a range, oldest first; the first is the baseline (the last
    close on or before `start`), the one a change over the range is counted from."""

    stock: StockInfo
    range: str
    start: date
    end: date
    closes: list[tuple[date, Decimal]]

    @property
    def change(self) -> Decimal | None:
        if len(self.closes) < 2:
            return None
        return self.closes[-1][1] - self.closes[0][1]

    @property
    def change_ratio(self) -> Decimal | None:
        change = self.change
        if change is None or not self.closes[0][1]:
            return None
        return change / self.closes[0][1]


def history_start(range_: str, today: date) -> date:
    """The baseline day of a stock history's range: that many months before today, or the last
    day of the previous year for ytd."""
    if range_ == "ytd":
        return date(today.year - 1, 12, 31)
    return months_before(today, HISTORY_MONTHS[range_])


class StockHistories:
    def __init__(
        self, market: MarketData, prices: Prices, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._market = market
        self._prices = prices
        self._clock = clock

    async def history(self, symbol: str, range_: str) -> StockHistory:
        """NotFound for a symbol the market does not list. Closes come from the store and the
        market as a portfolio's performance takes them (and are stored the same way)."""
        key = range_.strip().lower() or DEFAULT_HISTORY_RANGE
        if key not in HISTORY_RANGES:
            raise InvalidArgument.field("range", f"must be one of {', '.join(HISTORY_RANGES)}")
        stock = await self._market.stock(normalize_symbol(symbol))
        today = self._clock().astimezone(UTC).date()
        start = history_start(key, today)
        found = await self._prices.history([stock.symbol], start, today)
        ordered = sorted(found.get(stock.symbol, {}).items())
        before = [close for close in ordered if close[0] <= start]
        within = [close for close in ordered if start < close[0] <= today]
        return StockHistory(stock, key, start, today, before[-1:] + within)
