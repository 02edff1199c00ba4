"""Reads that replay a portfolio's history read its trades and its splits of one moment, through
the real portfolio server on SQLite and PostgreSQL.

A back-dated buy and a reverse split commit between a read of the trades and the read of the
splits (PostgreSQL's READ COMMITTED sees each statement's own moment): replayed together, the
old trades under the new split sell more than was held, and a read that should simply show the
portfolio as it was failed. The race is made at the seam between the two reads: the split
repository's read first lets the other writes commit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

import pytest
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.repository import SplitRepository
from tests.integration.portfolio_harness import Metadata, PortfolioService, split
from tests.utc_days import noon

DAY = date(2024, 5, 1)


async def history(s: PortfolioService) -> tuple[Metadata, str]:
    """10 AAPL bought at 100, 4 sold at 110 four days later: a realized gain of 40."""
    who, p = await s.user_with_portfolio()
    await s.trade(who, p.id, "buy", "10", "100", symbol="AAPL", executed_at=noon(DAY))
    await s.trade(
        who, p.id, "sell", "4", "110", symbol="AAPL", executed_at=noon(DAY + timedelta(days=4))
    )
    return who, p.id


def race_at_the_split_read(
    s: PortfolioService, who: Metadata, portfolio_id: str, monkeypatch: pytest.MonkeyPatch
) -> list[bool]:
    """The next read of splits first commits a buy of 20 before the history began and a 1:3
    reverse split between the buy and the sale (the sale of 4 still fits: 30 -> 10 shares)."""
    original = SplitRepository.of_many
    raced: list[bool] = []

    async def racing(self: SplitRepository, ids: Any) -> Any:
        if not raced:
            raced.append(True)
            before = noon(DAY - timedelta(days=1))
            await s.trade(who, portfolio_id, "buy", "20", "90", symbol="AAPL", executed_at=before)
            await split(s, who, portfolio_id, "AAPL", (DAY + timedelta(days=2)).isoformat(), 1, 3)
        return await original(self, ids)

    monkeypatch.setattr(SplitRepository, "of_many", racing)
    return raced


def aapl(positions: Any) -> tuple[str, str]:
    found = next(p for p in positions if p.symbol == "AAPL")
    return found.quantity, found.realized_gain


async def performance(s: PortfolioService, who: Metadata, portfolio_id: str) -> tuple[str, ...]:
    reply = await s.stub.GetPerformance(
        pb.GetPerformanceRequest(portfolio_id=portfolio_id, range="all"), metadata=who
    )
    return reply.realized_gain, reply.inflows, reply.outflows


async def positions(s: PortfolioService, who: Metadata, portfolio_id: str) -> tuple[str, ...]:
    reply = await s.stub.ListPositions(
        pb.ListPositionsRequest(portfolio_id=portfolio_id, include_closed=True), metadata=who
    )
    return aapl(reply.positions)


async def portfolio(s: PortfolioService, who: Metadata, portfolio_id: str) -> tuple[str, ...]:
    reply = await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=portfolio_id), metadata=who)
    return (*aapl(reply.portfolio.positions), reply.portfolio.realized_gain)


async def listed(s: PortfolioService, who: Metadata, portfolio_id: str) -> tuple[str, ...]:
    reply = await s.stub.ListPortfolios(pb.ListPortfoliosRequest(), metadata=who)
    (found,) = reply.portfolios
    return (*aapl(found.positions), found.realized_gain)


async def realized(s: PortfolioService, who: Metadata, portfolio_id: str) -> tuple[str, ...]:
    reply = await s.stub.ListRealizedGains(
        pb.ListRealizedGainsRequest(portfolio_id=portfolio_id), metadata=who
    )
    return (reply.totals.total, *(f"{g.quantity}@{g.cost_basis}" for g in reply.gains))


async def income(s: PortfolioService, who: Metadata, portfolio_id: str) -> tuple[str, ...]:
    reply = await s.stub.GetPortfolioIncome(
        pb.GetPortfolioIncomeRequest(portfolio_id=portfolio_id), metadata=who
    )
    return (reply.totals.gross,)  # no dividends: it must only answer, and not fail


Read = Callable[[PortfolioService, Metadata, str], Awaitable[tuple[str, ...]]]


@pytest.mark.parametrize(
    ("read", "replayed"),
    [
        (performance, False),  # the reports always replay
        (realized, False),
        (income, False),
        (positions, True),  # the rest replay a portfolio without a stored book
        (portfolio, True),
        (listed, True),
    ],
    ids=["performance", "realized", "income", "positions", "portfolio", "portfolios"],
)
async def test_a_replay_reads_trades_and_splits_of_one_moment(
    portfolio_service: PortfolioService,
    monkeypatch: pytest.MonkeyPatch,
    read: Read,
    replayed: bool,
) -> None:
    s = portfolio_service
    who, portfolio_id = await history(s)
    before = await read(s, who, portfolio_id)
    if replayed:
        await s.forget_stored_books()
    raced = race_at_the_split_read(s, who, portfolio_id, monkeypatch)
    during = await read(s, who, portfolio_id)
    assert raced == [True]
    # The portfolio as it was when the read began: 6 AAPL left, a gain of 40 realized.
    assert during == before
    assert "40.00" in before or read is income
    monkeypatch.undo()
    # The writes that raced did commit, and the next read shows them: 10 bought at 100 and 20
    # at 90 make 30, a 1:3 reverse split 10, less the 4 sold.
    after = await read(s, who, portfolio_id)
    assert after != before or read is income
    if read in (positions, portfolio, listed):
        assert after[0] == "6"
