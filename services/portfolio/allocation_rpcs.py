"""The target-allocation RPCs of PortfolioService (a mixin of the servicer): request ->
allocations.py -> response, and the messages they answer with."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.allocations import Rebalance, Targets
from services.portfolio.domain import (
    PERCENT_PLACES,
    present_money,
    present_price,
    present_quantity,
    present_sum,
)
from services.portfolio.messages import SIDE_TO_PROTO
from services.portfolio.rebalancing import Line, cash_weight
from services.portfolio.wire_numbers import rounded
from services.runtime.interceptors import require_identity

if TYPE_CHECKING:
    from services.portfolio.servicer import UseCases


class AllocationRpcs:
    _cases: UseCases

    async def GetPortfolioTargets(
        self, request: portfolio_pb2.GetPortfolioTargetsRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetPortfolioTargetsResponse:
        found = await self._cases.allocations.targets(
            require_identity().user_id, request.portfolio_id
        )
        return targets_message(found)

    async def UpdatePortfolioTargets(
        self,
        request: portfolio_pb2.UpdatePortfolioTargetsRequest,
        context: grpc.aio.ServicerContext,
    ) -> portfolio_pb2.UpdatePortfolioTargetsResponse:
        kept = await self._cases.allocations.replace(
            require_identity().user_id,
            request.portfolio_id,
            [(t.symbol, t.weight) for t in request.targets],
        )
        shown = targets_message(kept)
        return portfolio_pb2.UpdatePortfolioTargetsResponse(
            portfolio_id=shown.portfolio_id, targets=shown.targets, cash_weight=shown.cash_weight
        )

    async def GetRebalance(
        self, request: portfolio_pb2.GetRebalanceRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetRebalanceResponse:
        suggested = await self._cases.allocations.rebalance(
            require_identity().user_id,
            request.portfolio_id,
            cash=request.cash,
            fractional=request.fractional,
            fee_per_trade=request.fee_per_trade,
            fee_percent=request.fee_percent,
            min_trade_value=request.min_trade_value,
        )
        return rebalance_message(suggested)


def _percent(value: Decimal | None) -> str:
    """A percent for the wire, to 2 places ("60.00"); undefined is ""."""
    return "" if value is None else format(rounded(value, PERCENT_PLACES), "f")


def _weight(value: Decimal) -> str:
    """A target weight as given, without trailing zeros ("60", "12.5")."""
    return format(value.normalize(), "f")


def targets_message(found: Targets) -> portfolio_pb2.GetPortfolioTargetsResponse:
    return portfolio_pb2.GetPortfolioTargetsResponse(
        portfolio_id=found.portfolio_id,
        targets=[
            portfolio_pb2.AllocationTarget(symbol=t.symbol, weight=_weight(t.weight))
            for t in found.targets
        ],
        cash_weight=_weight(cash_weight(found.targets)),
    )


def _line_message(line: Line, suggested: Rebalance) -> portfolio_pb2.RebalanceLine:
    plan = suggested.plan
    weight = plan.weight(line.value)
    listing = suggested.listed.get(line.symbol) if line.price is not None else None
    fields: dict[str, object] = {}
    if listing is not None:
        fields = {
            "currency": listing.currency,
            "local_price": present_price(listing.local_price),
            "fx_rate": format(listing.rate, "f"),
        }
    if line.side is not None:
        fields |= {
            "side": SIDE_TO_PROTO[line.side],
            "trade_quantity": present_quantity(line.trade_quantity),
            "trade_value": present_money(line.trade_value),
            "fee": present_money(line.fee),
        }
    return portfolio_pb2.RebalanceLine(
        **fields,  # type: ignore[arg-type]
        symbol=line.symbol,
        price=present_price(line.price) if line.price is not None else "",
        quantity=present_quantity(line.quantity),
        value=present_money(line.value),
        weight=_percent(weight),
        target_weight=_weight(line.target_weight),
        drift=present_sum(weight, -line.target_weight, present=_percent)
        if weight is not None
        else "",
        reason=line.reason,
        weight_after=_percent(plan.weight_after(line.value_after)),
    )


def rebalance_message(suggested: Rebalance) -> portfolio_pb2.GetRebalanceResponse:
    plan = suggested.plan
    cash = plan.cash + plan.extra_cash
    return portfolio_pb2.GetRebalanceResponse(
        portfolio_id=suggested.portfolio_id,
        currency=suggested.currency,
        total_value=present_money(plan.total_value),
        cash=present_money(plan.cash),
        extra_cash=present_money(plan.extra_cash),
        cash_weight=_percent(plan.weight(cash)),
        target_cash_weight=_weight(plan.cash_target),
        lines=[_line_message(line, suggested) for line in plan.lines],
        cash_after=present_money(plan.cash_after),
        cash_weight_after=_percent(plan.weight_after(plan.cash_after)),
        fractional=plan.fractional,
        total_fees=present_money(plan.total_fees),
        total_value_after=present_money(plan.total_value_after),
        fee_per_trade=present_price(plan.costs.per_trade),
        fee_percent=_weight(plan.costs.percent),
        min_trade_value=present_price(plan.costs.minimum),
    )
