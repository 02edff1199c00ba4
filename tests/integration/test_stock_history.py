"""A stock's daily closes over a range (services/portfolio/stocks.py), on SQLite and PostgreSQL,
against the simulated market it reads: the window starts at the baseline close (the trading
day's before a weekend), closes a person corrected in the store win over the market's, what was
fetched is stored, and the change is counted from the baseline."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.portfolio.mock_market import MockMarket
from services.portfolio.prices import Prices
from services.portfolio.repository import PriceRepository
from services.portfolio.stocks import StockHistories
from services.runtime.db import Database
from services.runtime.errors import InvalidArgument, NotFound

D = Decimal
NOW = datetime(2024, 5, 16, 12, tzinfo=UTC)  # a Thursday


async def test_a_range_starts_at_its_baseline_close_and_keeps_corrected_closes(
    portfolio_database_url: str,
) -> None:
    db = Database(portfolio_database_url)
    market = MockMarket(seed=7, clock=lambda: NOW)
    histories = StockHistories(market, Prices(db, market, clock=lambda: NOW), clock=lambda: NOW)
    try:
        month = await histories.history(" aapl ", "1m")
        # 16 April 2024 is a Tuesday: its own close is the baseline.
        assert (month.stock.symbol, month.range, month.start, month.end) == (
            "AAPL",
            "1m",
            date(2024, 4, 16),
            date(2024, 5, 16),
        )
        market_closes = await market.daily_history("AAPL", date(2024, 4, 16), date(2024, 5, 16))
        assert month.closes == sorted(market_closes.items())
        assert month.closes[0][0] == date(2024, 4, 16)
        assert month.closes[-1][0] == date(2024, 5, 16)  # today, at the current price
        assert all(day.weekday() < 5 for day, _ in month.closes)
        first, last = month.closes[0][1], month.closes[-1][1]
        assert month.change == last - first
        assert month.change_ratio == (last - first) / first

        # What was fetched is stored (the next reader finds it without the market), but for
        # today's: the price so far, which a stored close would freeze.
        async with db.reading() as session:
            stored = await PriceRepository(session).closes(
                ["AAPL"], date(2024, 4, 16), date(2024, 5, 16)
            )
        assert stored["AAPL"] == dict(month.closes[:-1])
        market.step()  # the market moves on today
        moved = await histories.history("AAPL", "1m")
        assert moved.closes[:-1] == month.closes[:-1]
        assert moved.closes[-1] == (date(2024, 5, 16), (await market.quote("AAPL")).price)
        assert moved.closes[-1] != month.closes[-1]

        # 31 December 2023 is a Sunday: the baseline is Friday the 29th's close.
        corrected = D("123.45")
        async with db.transaction() as session:
            await PriceRepository(session).record("AAPL", date(2024, 1, 2), corrected)
        ytd = await histories.history("AAPL", "YTD")
        assert ytd.start == date(2023, 12, 31)
        assert ytd.closes[0][0] == date(2023, 12, 29)
        assert ytd.closes[1][0] == date(2024, 1, 1)
        assert dict(ytd.closes)[date(2024, 1, 2)] == corrected
        assert ytd.change == ytd.closes[-1][1] - ytd.closes[0][1]

        # Absent: a year. Five years have their baseline too: the close on or before the start
        # (the simulated market's history once began a day after it).
        year = await histories.history("AAPL", "")
        assert (year.range, year.start) == ("1y", date(2023, 5, 16))
        five = await histories.history("AAPL", "5y")
        assert five.start == date(2019, 5, 16)
        assert five.closes[0][0] == date(2019, 5, 16)  # a Thursday
        assert five.closes[-1] == year.closes[-1]
        assert len(five.closes) > 4 * len(year.closes)

        with pytest.raises(InvalidArgument) as refused:
            await histories.history("AAPL", "2y")
        assert refused.value.fields == [("range", "must be one of 1m, 3m, 6m, 1y, ytd, 5y")]
        with pytest.raises(NotFound):
            await histories.history("ZZZZQ", "1m")
    finally:
        await db.close()
