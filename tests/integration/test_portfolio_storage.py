"""The portfolio database on SQLite and PostgreSQL: the migration builds exactly the tables the
code declares, decimals come back digit for digit, times come back in UTC, and a portfolio's
deletion takes its trades with it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from services.portfolio.domain import Side, Trade
from services.portfolio.orm import metadata, trades
from services.portfolio.records import Portfolio, PortfolioKind, RecordedTrade
from services.portfolio.repository import PortfolioRepository, PriceRepository, TradeRepository
from services.runtime.db import Database
from services.runtime.migrations import downgrade, upgrade


async def test_the_migration_builds_exactly_the_declared_tables(portfolio_db: Database) -> None:
    async with portfolio_db.engine.connect() as connection:
        differences = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert differences == []


def test_the_migration_goes_down_and_up_again(portfolio_database_url: str) -> None:
    downgrade("portfolio", portfolio_database_url)
    upgrade("portfolio", portfolio_database_url)


async def test_decimals_and_times_come_back_exactly(portfolio_db: Database) -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    portfolio = Portfolio("p-1", "u-1", "Main", "", "USD", PortfolioKind.TRACKING, created, created)
    eastern = timezone(timedelta(hours=-5))
    trade = Trade(
        Side.BUY,
        "KO",
        Decimal("0.12345678"),
        Decimal("123456789012.123456"),
        Decimal("0.000001"),
        datetime(2026, 1, 2, 10, 0, tzinfo=eastern),
        sequence=1,
        id="t-1",
        notes="exact",
    )
    async with portfolio_db.transaction() as session:
        await PortfolioRepository(session).add(portfolio)
        await TradeRepository(session).add([RecordedTrade("p-1", trade, created, "mock")])
        await PriceRepository(session).record("KO", date(2026, 1, 2), Decimal("62.4000"))
        await PriceRepository(session).record("KO", date(2026, 1, 2), Decimal("62.41"))
    async with portfolio_db.reading() as session:
        (found,) = await TradeRepository(session).of("p-1")
        closes = await PriceRepository(session).closes(["KO"], date(2026, 1, 1), date(2026, 1, 3))
        got = await PortfolioRepository(session).get("p-1", "u-1")
        theirs = await PortfolioRepository(session).get("p-1", "u-2")
    assert found.trade == trade
    assert (found.trade.quantity * found.trade.price) == trade.quantity * trade.price
    assert found.trade.executed_at.tzinfo is not None
    assert found.trade.executed_at == datetime(2026, 1, 2, 15, 0, tzinfo=UTC)
    assert (found.created_at, found.price_source) == (created, "mock")
    assert closes == {"KO": {date(2026, 1, 2): Decimal("62.41")}}
    assert got == portfolio and theirs is None


async def test_deleting_a_portfolio_deletes_its_trades(portfolio_db: Database) -> None:
    now = datetime.now(UTC)
    portfolio = Portfolio("p-1", "u-1", "Main", "", "USD", PortfolioKind.PAPER, now, now)
    deposit = Trade(Side.DEPOSIT, "", Decimal(5), Decimal(1), Decimal(0), now, 1, "t-1")
    async with portfolio_db.transaction() as session:
        await PortfolioRepository(session).add(portfolio)
        await TradeRepository(session).add([RecordedTrade("p-1", deposit, now)])
    async with portfolio_db.transaction() as session:
        assert await PortfolioRepository(session).remove("p-1", "u-1")
    async with portfolio_db.reading() as session:
        assert (await session.execute(select(trades))).all() == []
