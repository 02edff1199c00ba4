"""The currency RPCs of PortfolioService (a mixin of the servicer): GetFxRate, request ->
exchange.py -> response."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.messages import fx_rate_message
from services.runtime.errors import InvalidArgument, Unavailable

if TYPE_CHECKING:
    from services.portfolio.servicer import UseCases


class FxRpcs:
    _cases: UseCases

    async def GetFxRate(
        self, request: portfolio_pb2.GetFxRateRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetFxRateResponse:
        exchange = self._cases.exchange
        if exchange is None:
            raise Unavailable("exchange rates are not configured", reason="NO_EXCHANGE_RATES")
        day = None
        if request.date.strip():
            try:
                day = date.fromisoformat(request.date.strip())
            except ValueError:
                raise InvalidArgument.field("date", "must be a day as YYYY-MM-DD") from None
        rate = await exchange.rate(getattr(request, "from"), request.to, day)
        return fx_rate_message(rate)
