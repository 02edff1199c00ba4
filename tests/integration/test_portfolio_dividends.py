"""The simulated market's dividends paid to paper portfolios (services/portfolio/dividends.py)
on SQLite and PostgreSQL: holders at the close before the ex-date get shares x dividend, in the
stock's currency converted at the ex-date's rate, published as trade events; paid once however
many rounds or leaders try, concurrently too; tracking portfolios and later buyers get none."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import cast

from services.portfolio.currencies import SimulatedRates
from services.portfolio.dividends import DividendPayer
from services.portfolio.domain import Side, Trade
from services.portfolio.events import EventHub
from services.portfolio.exchange import Exchange
from services.portfolio.mock_market import MockMarket
from services.portfolio.prices import Prices
from services.portfolio.records import Portfolio, PortfolioKind
from services.portfolio.repository import PortfolioRepository, TradeRepository
from services.portfolio.trades import Trades
from services.runtime.db import Database
from tests.integration.portfolio_harness import Events
from tests.utc_days import at

D = Decimal
NOW = datetime(2024, 5, 16, 12, tzinfo=UTC)  # JNJ and SHEL go ex-dividend on May 15


async def test_holders_are_paid_once_in_the_stocks_currency_converted(
    portfolio_database_url: str,
) -> None:
    db = Database(portfolio_database_url)
    market = MockMarket(seed=7, clock=lambda: NOW)
    events = Events()
    exchange = Exchange(db, market, clock=lambda: NOW)
    hub = cast(EventHub, events)
    trades = Trades(db, market, cast(Prices, None), hub, clock=lambda: NOW, exchange=exchange)
    try:
        async with db.transaction() as session:
            for pid, kind in (("paper", PortfolioKind.PAPER), ("tracking", PortfolioKind.TRACKING)):
                owned = Portfolio(pid, "u-1", pid, "", "USD", kind, NOW, NOW)
                await PortfolioRepository(session).add(owned)
        for pid in ("paper", "tracking"):
            history = [
                Trade(Side.DEPOSIT, "", D(20000), D(1), D(0), at(date(2024, 5, 1), 9)),
                Trade(Side.BUY, "JNJ", D(10), D(150), D(0), at(date(2024, 5, 1))),
                Trade(Side.BUY, "SHEL", D(100), D(27), D(0), at(date(2024, 5, 1))),
                # Bought on the ex-date: not a holder at the close before it.
                Trade(Side.BUY, "JNJ", D(5), D(151), D(0), at(date(2024, 5, 15))),
            ]
            for trade in history:
                converted, fx = await exchange.trade_in(trade, "USD")
                await trades.append("u-1", pid, [converted], conversions=[fx])
        payer = DividendPayer(db, market, trades, hub, exchange, clock=lambda: NOW)
        first, second = await asyncio.gather(payer.pay_due(), payer.pay_due())
        assert first + second == 2
        assert await payer.pay_due() == 0
        # Ten days on, no ex-date is in the window: nothing is read or paid.
        later = datetime(2024, 5, 26, 12, tzinfo=UTC)
        assert (
            await DividendPayer(db, market, trades, hub, exchange, clock=lambda: later).pay_due()
            == 0
        )
        async with db.reading() as session:
            paper = await TradeRepository(session).of("paper")
            tracking = await TradeRepository(session).of("tracking")
        paid = {r.trade.symbol: r for r in paper if r.trade.side is Side.DIVIDEND}
        assert not [r for r in tracking if r.trade.side is Side.DIVIDEND]
        jnj, shel = paid["JNJ"], paid["SHEL"]
        assert (jnj.trade.quantity, jnj.trade.price, jnj.trade.amount) == (
            D(10),
            D("1.24"),
            D("12.40"),
        )
        gbp = SimulatedRates(7).close("GBP", "USD", date(2024, 5, 15))[1]
        assert shel.fx is not None
        assert (shel.fx.currency, shel.fx.rate, shel.fx.local_price) == ("GBP", gbp, D("0.2707"))
        assert shel.trade.amount == 100 * D("0.2707") * gbp
        assert jnj.trade.executed_at == datetime(2024, 5, 15, tzinfo=UTC)
        assert sorted(r.trade.symbol for r in events.published) == ["JNJ", "SHEL"]
    finally:
        await db.close()
