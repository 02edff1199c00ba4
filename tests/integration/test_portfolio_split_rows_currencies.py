"""The CSV round trip of splits in a euro portfolio of dollar stocks, with a split of
a symbol never traded and one before any trade (real server, SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date

from tests.integration.portfolio_harness import PortfolioService
from tests.integration.test_portfolio_import_export import export_text, import_csv
from tests.integration.test_portfolio_performance_service import noon
from tests.integration.test_portfolio_split_rows import split_summary, summary, tables
from tests.integration.test_portfolio_splits import split, splits_of


async def test_a_euro_portfolios_export_with_splits_imports_as_the_same_holdings(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio(currency="EUR")
    await split(s, who, p.id, "MSFT", "2023-01-03", 2, 1)  # before any trade
    await s.trade(who, p.id, "buy", "10", "187.4213", "AAPL", executed_at=noon(date(2024, 3, 15)))
    await split(s, who, p.id, "AAPL", "2024-04-01", 1, 3, "561.123457")
    await split(s, who, p.id, "KO", "2024-04-01", 3, 2)  # never traded
    await s.trade(who, p.id, "sell", "1", "600", "AAPL", executed_at=noon(date(2024, 4, 1)))
    await split(s, who, p.id, "AAPL", "2024-05-02", 7, 3, "250.5")

    downloaded = await export_text(s, who, p.id)
    rows, _ = tables(downloaded)
    sides = [(r["date"][:10], r["side"], r["symbol"], r["quantity"]) for r in rows]
    assert sides == [
        ("2023-01-03", "split", "MSFT", "2:1"),
        ("2024-03-15", "buy", "AAPL", "10"),
        ("2024-04-01", "split", "AAPL", "1:3"),
        ("2024-04-01", "split", "KO", "3:2"),
        ("2024-04-01", "sell", "AAPL", "1"),
        ("2024-05-02", "split", "AAPL", "7:3"),
    ]
    q = await s.portfolio(who, "Copy", currency="EUR")
    reply = await import_csv(s, who, q.id, downloaded)
    assert reply.imported == 2
    assert split_summary(await splits_of(s, who, q.id)) == split_summary(
        await splits_of(s, who, p.id)
    )
    assert await summary(s, who, q.id) == await summary(s, who, p.id)
