"""A trade in a portfolio of another currency while the market cannot say which currency its
stock trades in (Alpha Vantage out of calls: the local fake answering its "Information"
notice): the trade is refused with the time to come back, never booked as if the stock traded
in the portfolio's currency (which recorded 187.42 USD as 187.42 JPY, for good), and holdings
are valued without that symbol meanwhile. Once the provider answers, the same trade converts
at the day's rate. On both cache backends."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.portfolio.alpha_vantage import COOLDOWN_KEY, AlphaVantage
from services.portfolio.config import load_market_config
from services.portfolio.domain import Side, Trade
from services.portfolio.exchange import Exchange
from services.runtime.cache import Cache
from services.runtime.db import Database
from services.runtime.errors import ResourceExhausted
from tests.fakes.alpha_vantage import API_KEY, FakeAlphaVantage

D = Decimal
NOW = datetime(2024, 1, 8, 21, 5, tzinfo=UTC)


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


async def test_a_trade_is_refused_rather_than_booked_in_a_guessed_currency(
    cache: Cache,
    portfolio_database_url: str,
) -> None:
    db = Database(portfolio_database_url)
    try:
        async with FakeAlphaVantage() as fake:
            config = load_market_config(
                {
                    "USE_MOCK_PRICES": "false",
                    "ALPHA_VANTAGE_API_KEY": API_KEY,
                    "ALPHA_VANTAGE_URL": fake.url,
                }
            )
            buy = Trade(Side.BUY, "AAPL", D(10), D("187.42"), D(0), NOW)
            spent = AlphaVantage(config, cache, clock=lambda: NOW)
            try:
                fake.mode = "information"  # the day's calls are spent
                exchange = Exchange(db, spent, clock=lambda: NOW)
                with pytest.raises(ResourceExhausted, match="which currency AAPL trades in") as out:
                    await exchange.trade_in(buy, "JPY")
                assert out.value.retry_after == 60
                # Holdings are valued without it meanwhile (a book falls back to its last trade
                # price, in the portfolio's currency), not at a dollar price read as yen.
                assert await exchange.convert({"AAPL": D("187.42")}, "JPY") == {}
            finally:
                await spent.close()

            # A minute on (a client that is not cooling down), the provider answers.
            fake.mode = "ok"
            await cache.delete(COOLDOWN_KEY)
            market = AlphaVantage(config, cache, clock=lambda: NOW)
            try:
                exchange = Exchange(db, market, clock=lambda: NOW)
                converted, fx = await exchange.trade_in(buy, "JPY")
                assert (fx.currency, fx.rate, fx.local_price) == ("USD", D("144.21"), D("187.42"))
                assert converted.price == D("187.42") * D("144.21")
                assert await exchange.convert({"AAPL": D("187.42")}, "JPY") == {
                    "AAPL": (D("187.42") * D("144.21"), "USD", D("144.21"))
                }
            finally:
                await market.close()
    finally:
        await db.close()
