"""What the tests of splits in the CSV round trip share (test_portfolio_split_rows*): the header
an import starts with, an export's two tables read back, and splits and a portfolio summarised
as tuples to compare before and after."""

from __future__ import annotations

import csv
import io

from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from tests.integration.portfolio_harness import Metadata, PortfolioService

HEADER = "date,side,symbol,quantity,price,fees,notes\n"


def tables(text: str) -> tuple[list[dict[str, str]], str]:
    """An export's trades table as dicts, and its positions table as text."""
    trades, positions = text.split("\r\n\r\n")
    rows = list(csv.DictReader(io.StringIO(trades)))
    return rows, positions


def split_summary(found: list[pb.StockSplit]) -> list[tuple[str, ...]]:
    return [
        (
            x.symbol,
            x.date,
            f"{x.numerator}:{x.denominator}",
            x.price,
            x.quantity_before,
            x.quantity_after,
            x.cash_in_lieu,
        )
        for x in found
    ]


async def summary(s: PortfolioService, who: Metadata, portfolio_id: str) -> tuple[object, ...]:
    """What the portfolio holds and made: its totals and every position with its lots."""
    got = (
        await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=portfolio_id), metadata=who)
    ).portfolio
    listed = await s.stub.ListPositions(
        pb.ListPositionsRequest(portfolio_id=portfolio_id, include_closed=True), metadata=who
    )
    positions = [
        (
            p.symbol,
            p.quantity,
            p.average_cost,
            p.cost_basis,
            p.realized_gain,
            [(lot.quantity, lot.unit_cost, lot.cost) for lot in p.lots],
        )
        for p in listed.positions
    ]
    totals = (got.cash, got.cost_basis, got.realized_gain, got.total_cost, got.fees)
    return totals, positions
