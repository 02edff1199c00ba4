"""Finding stocks: the market's matches for a search, a page at a time."""

from __future__ import annotations

from services.portfolio.market_data import MarketData, StockInfo
from services.runtime.pagination import Page

# Enough for every match a market gives; a search pages through them.
MAX_SEARCH_RESULTS = 500


async def search_stocks(market: MarketData, q: str, page: Page) -> tuple[list[StockInfo], int]:
    """One page of the stocks matching `q`, best matches first, and how many match."""
    found = await market.search(q, MAX_SEARCH_RESULTS)
    return found[page.offset : page.offset + page.limit], len(found)
