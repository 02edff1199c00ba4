"""The overview RPC of PortfolioService (a mixin of the servicer): GetOverview, request ->
overview.py -> response, and the message it answers with."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.currencies import FxRate
from services.portfolio.domain import (
    present_money,
    present_percent,
    present_price,
    present_quantity,
    present_ratio,
)
from services.portfolio.messages import KIND_TO_PROTO
from services.portfolio.overview import Figures, Holding, Overview, PortfolioRow
from services.runtime.interceptors import require_identity
from services.runtime.timestamps import timestamp

if TYPE_CHECKING:
    from services.portfolio.servicer import UseCases


class OverviewRpcs:
    _cases: UseCases

    async def GetOverview(
        self, request: portfolio_pb2.GetOverviewRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetOverviewResponse:
        found = await self._cases.overviews.overview(require_identity().user_id, request.currency)
        return overview_message(found)


def overview_message(overview: Overview) -> portfolio_pb2.GetOverviewResponse:
    return portfolio_pb2.GetOverviewResponse(
        currency=overview.currency,
        totals=_totals(overview.totals),
        portfolios=[_row(r) for r in overview.portfolios],
        holdings=[_holding(h) for h in overview.holdings],
        allocation=[
            portfolio_pb2.AllocationSlice(
                name=s.name, value=present_money(s.value), weight=present_ratio(s.weight)
            )
            for s in overview.allocation
        ],
        rates=[_rate(r) for r in overview.rates],
        as_of=timestamp(overview.as_of),
    )


def _totals(figures: Figures) -> portfolio_pb2.OverviewTotals:
    return portfolio_pb2.OverviewTotals(
        total_value=present_money(figures.total_value),
        cash=present_money(figures.cash),
        total_cost=present_money(figures.total_cost),
        total_gain_loss=present_money(figures.total_gain_loss),
        total_gain_loss_percent=present_percent(figures.total_return),
        cost_basis=present_money(figures.cost_basis),
        realized_gain=present_money(figures.realized_gain),
        unrealized_gain=present_money(figures.unrealized_gain),
        dividends=present_money(figures.dividends),
        fees=present_money(figures.fees),
    )


def _row(row: PortfolioRow) -> portfolio_pb2.OverviewPortfolio:
    return portfolio_pb2.OverviewPortfolio(
        id=row.id,
        name=row.name,
        kind=KIND_TO_PROTO[row.kind],
        currency=row.currency,
        local_value=present_money(row.local_value),
        fx_rate=format(row.rate, "f"),
        value=present_money(row.value),
        weight=present_ratio(row.weight),
    )


def _holding(holding: Holding) -> portfolio_pb2.OverviewHolding:
    return portfolio_pb2.OverviewHolding(
        symbol=holding.symbol,
        quantity=present_quantity(holding.quantity),
        market_value=present_money(holding.market_value),
        cost_basis=present_money(holding.cost_basis),
        unrealized_gain=present_money(holding.unrealized_gain),
        weight=present_ratio(holding.weight),
        portfolio_count=holding.portfolio_count,
        currency=holding.currency,
        local_price="" if holding.local_price is None else present_price(holding.local_price),
    )


def _rate(rate: FxRate) -> portfolio_pb2.FxRate:
    """As GET /api/v1/fx states the same rate."""
    return portfolio_pb2.FxRate(
        to=rate.quote,
        rate=format(rate.rate, "f"),
        date=rate.day.isoformat(),
        source=rate.source,
        **{"from": rate.base},
    )
