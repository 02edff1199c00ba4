"""A paper portfolio's dividends and a portfolio's export against what lands meanwhile, with the
portfolio service's own objects over a real database (SQLite and PostgreSQL), where the order
of events must be controlled: a dividend already held is not paid again, and an export is one
moment of the portfolio (each failed before; found by a review)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import cast

import pytest

from services.portfolio.dividends import DividendPayer
from services.portfolio.domain import Side, Trade
from services.portfolio.events import EventHub
from services.portfolio.exchange import Exchange
from services.portfolio.exports import Exports
from services.portfolio.imports import Imports
from services.portfolio.mock_market import MockMarket
from services.portfolio.prices import Prices
from services.portfolio.records import Portfolio, PortfolioKind, RecordedTrade
from services.portfolio.repository import PortfolioRepository, TradeRepository
from services.portfolio.trades import Trades
from services.runtime.db import Database
from tests.integration.portfolio_harness import Events
from tests.utc_days import at

D = Decimal
NOW = datetime(2024, 5, 16, 12, tzinfo=UTC)  # JNJ went ex-dividend on May 15 (1.24 a share)


class World:
    def __init__(self, url: str) -> None:
        self.db = Database(url)
        self.market = MockMarket(seed=7, clock=lambda: NOW)
        self.hub = cast(EventHub, Events())
        self.exchange = Exchange(self.db, self.market, clock=lambda: NOW)
        self.prices = Prices(self.db, self.market, self.exchange, clock=lambda: NOW)
        self.trades = Trades(
            self.db, self.market, self.prices, self.hub, clock=lambda: NOW, exchange=self.exchange
        )
        self.payer = DividendPayer(
            self.db, self.market, self.trades, self.hub, self.exchange, clock=lambda: NOW
        )
        self.imports = Imports(
            self.trades, self.hub, max_rows=1000, clock=lambda: NOW, exchange=self.exchange
        )

    async def portfolio(self, pid: str, kind: PortfolioKind) -> None:
        async with self.db.transaction() as session:
            await PortfolioRepository(session).add(
                Portfolio(pid, "u-1", pid, "", "USD", kind, NOW, NOW)
            )

    async def record(self, pid: str, *trades: Trade) -> None:
        for trade in trades:
            converted, fx = await self.exchange.trade_in(trade, "USD")
            await self.trades.append("u-1", pid, [converted], conversions=[fx])

    async def history(self, pid: str) -> list[RecordedTrade]:
        async with self.db.reading() as session:
            return await TradeRepository(session).of(pid)


@pytest.fixture
async def world(portfolio_database_url: str) -> AsyncIterator[World]:
    w = World(portfolio_database_url)
    try:
        yield w
    finally:
        await w.db.close()


async def test_a_paper_portfolio_restored_from_its_export_is_not_paid_the_dividend_twice(
    world: World,
) -> None:
    """Paper portfolio A is paid JNJ's May 15 dividend. Its CSV export (trades table) is imported
    into a new paper portfolio B, the dividend row with it. B already has that dividend: the next
    round must not pay it a second time."""
    w = world
    await w.portfolio("a", PortfolioKind.PAPER)
    await w.record(
        "a",
        Trade(Side.DEPOSIT, "", D(5000), D(1), D(0), at(date(2024, 5, 1), 9)),
        Trade(Side.BUY, "JNJ", D(10), D(150), D(0), at(date(2024, 5, 1))),
    )
    assert await w.payer.pay_due() == 1
    exports = Exports(w.db, w.prices, clock=lambda: NOW)
    chunks = await exports.open("u-1", "a", "csv")
    text = b"".join([c.data async for c in chunks]).decode()
    trades_part = text.split("\r\n\r\n")[0]
    assert ",dividend,JNJ,10,1.24," in trades_part

    await w.portfolio("b", PortfolioKind.PAPER)
    await w.imports.run("u-1", "b", trades_part, dry_run=False)
    await w.payer.pay_due()
    dividends = [r.trade for r in await w.history("b") if r.trade.side is Side.DIVIDEND]
    assert [(t.symbol, t.executed_at.date(), t.amount) for t in dividends] == [
        ("JNJ", date(2024, 5, 15), D("12.40"))
    ]


async def test_an_export_taken_while_an_import_lands_is_whole_and_consistent(
    world: World,
) -> None:
    """An import that lands while the file is being downloaded, with a back-dated buy (before
    what was read) and a sell of it (after): the export read a page at a time in separate
    transactions, saw the sell and not the buy, and broke off mid-stream (InsufficientShares).
    Now it is the portfolio as it was when the export began."""
    w = world
    await w.portfolio("t", PortfolioKind.TRACKING)
    await w.record(
        "t",
        Trade(Side.BUY, "KO", D(10), D(50), D(0), at(date(2024, 1, 1))),
        Trade(Side.DEPOSIT, "", D(100), D(1), D(0), at(date(2024, 1, 2))),
        Trade(Side.DEPOSIT, "", D(100), D(1), D(0), at(date(2024, 1, 3))),
    )
    exports = Exports(w.db, w.prices, clock=lambda: NOW, chunk_bytes=1, page_size=2)
    stream = await exports.open("u-1", "t", "csv")
    received = [await anext(stream)]  # the header and the first trade: page one was read
    csv_text = (
        "date,side,symbol,quantity,price\n"
        "2024-01-01T16:00:00Z,buy,KO,5,50\n"
        "2024-01-04,sell,KO,15,55\n"
    )
    await w.imports.run("u-1", "t", csv_text, dry_run=False)
    received += [chunk async for chunk in stream]
    text = b"".join(c.data for c in received).decode()
    trade_rows = text.split("\r\n\r\n")[0].strip().split("\r\n")[1:]
    assert [row.split(",")[1:4] for row in trade_rows] == [
        ["buy", "KO", "10"],
        ["deposit", "", "100"],
        ["deposit", "", "100"],
    ]
    positions = text.split("\r\n\r\n")[1].strip().split("\r\n")
    assert positions[1].split(",")[:2] == ["KO", "10"]
