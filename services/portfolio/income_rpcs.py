"""The dividend-income RPC of PortfolioService (a mixin of the servicer): request ->
income_reports.py -> response, and the messages it answers with. Money is rounded once, here."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.domain import (
    present_money,
    present_price,
    present_quantity,
    present_ratio,
    present_sum,
)
from services.portfolio.income import Amounts, Grouping, Projection, Trailing
from services.portfolio.income_reports import Income
from services.portfolio.periods import period_of
from services.runtime.interceptors import require_identity

if TYPE_CHECKING:
    from services.portfolio.servicer import UseCases

GROUPING_TO_PROTO = {
    Grouping.MONTH: portfolio_pb2.INCOME_GROUPING_MONTH,
    Grouping.QUARTER: portfolio_pb2.INCOME_GROUPING_QUARTER,
    Grouping.YEAR: portfolio_pb2.INCOME_GROUPING_YEAR,
}
PROTO_TO_GROUPING = {v: k for k, v in GROUPING_TO_PROTO.items()}


class IncomeRpcs:
    _cases: UseCases

    async def GetPortfolioIncome(
        self, request: portfolio_pb2.GetPortfolioIncomeRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetPortfolioIncomeResponse:
        found = await self._cases.income.income(
            require_identity().user_id,
            request.portfolio_id,
            period_of(getattr(request, "from"), request.to),
            PROTO_TO_GROUPING.get(request.group_by, Grouping.MONTH),
        )
        return income_message(found)


def amounts_message(amounts: Amounts) -> portfolio_pb2.IncomeAmounts:
    return portfolio_pb2.IncomeAmounts(
        gross=present_money(amounts.gross),
        fees=present_money(amounts.fees),
        # The difference of the two figures beside it, so that they add up on screen.
        net=present_sum(amounts.gross, -amounts.fees),
        count=amounts.count,
    )


def trailing_message(trailing: Trailing) -> portfolio_pb2.TrailingIncome:
    return portfolio_pb2.TrailingIncome(
        start=trailing.start.isoformat(),
        end=trailing.end.isoformat(),
        income=amounts_message(trailing.income),
        held_income=present_money(trailing.held_income),
        cost_basis=present_money(trailing.cost_basis),
        yield_on_cost=present_ratio(trailing.yield_on_cost),
    )


def projection_message(projection: Projection, note: str) -> portfolio_pb2.ProjectedIncome:
    return portfolio_pb2.ProjectedIncome(
        start=projection.start.isoformat(),
        end=projection.end.isoformat(),
        dividends=[
            portfolio_pb2.ProjectedDividend(
                symbol=p.symbol,
                ex_date=p.ex_date.isoformat(),
                quantity=present_quantity(p.quantity),
                per_share=present_price(p.per_share),
                currency=p.currency,
                fx_rate=format(p.rate, "f"),
                amount=present_money(p.amount),
            )
            for p in projection.dividends
        ],
        total=present_money(projection.total),
        note=note,
    )


def income_message(found: Income) -> portfolio_pb2.GetPortfolioIncomeResponse:
    report = found.report
    return portfolio_pb2.GetPortfolioIncomeResponse(
        portfolio_id=found.portfolio_id,
        currency=found.currency,
        group_by=GROUPING_TO_PROTO[report.grouping],
        totals=amounts_message(report.totals),
        periods=[
            portfolio_pb2.IncomePeriod(
                label=p.label,
                start=p.start.isoformat(),
                end=p.end.isoformat(),
                income=amounts_message(p.income),
            )
            for p in report.periods
        ],
        symbols=[
            portfolio_pb2.SymbolIncome(
                symbol=s.symbol, income=amounts_message(s.income), share=present_ratio(s.share)
            )
            for s in report.symbols
        ],
        trailing=trailing_message(found.trailing),
        projected=projection_message(found.projection, found.note),
    )
