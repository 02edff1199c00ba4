"""The currency RPCs of PortfolioService (a mixin of the servicer): GetFxRate, request ->
exchange.py -> response."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.messages import fx_rate_message

if TYPE_CHECKING:
    from services.portfolio.servicer import UseCases


class FxRpcs:
    _cases: UseCases

    async def GetFxRate(
        self, request: portfolio_pb2.GetFxRateRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetFxRateResponse:
        rate = await self._cases.exchange.rate_asked(
            getattr(request, "from"), request.to, request.date
        )
        return fx_rate_message(rate)
