"""The stock-split RPCs of PortfolioService (a mixin of the servicer): request -> splits.py ->
response. CreateSplit runs through the idempotency store like the other creating RPCs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.messages import split_message
from services.portfolio.records import SplitEffect
from services.portfolio.splits import SplitDraft
from services.runtime.interceptors import require_identity

if TYPE_CHECKING:
    from services.portfolio.servicer import UseCases


class SplitRpcs:
    _cases: UseCases

    async def ListSplits(
        self, request: portfolio_pb2.ListSplitsRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.ListSplitsResponse:
        found = await self._cases.splits.find(
            require_identity().user_id, request.portfolio_id, request.symbol
        )
        return portfolio_pb2.ListSplitsResponse(splits=[split_message(e) for e in found])

    async def CreateSplit(
        self, request: portfolio_pb2.CreateSplitRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.CreateSplitResponse:
        user_id = require_identity().user_id
        draft = SplitDraft(
            symbol=request.symbol,
            date=request.date,
            numerator=request.numerator,
            denominator=request.denominator,
            price=request.price,
        )
        idempotency = self._cases.idempotency

        def respond(effect: SplitEffect) -> portfolio_pb2.CreateSplitResponse:
            return portfolio_pb2.CreateSplitResponse(split=split_message(effect))

        async def create() -> portfolio_pb2.CreateSplitResponse:
            settle = idempotency.settling(respond)
            return respond(
                await self._cases.splits.create(user_id, request.portfolio_id, draft, settle=settle)
            )

        return await idempotency.run(request, portfolio_pb2.CreateSplitResponse, create)

    async def DeleteSplit(
        self, request: portfolio_pb2.DeleteSplitRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.DeleteSplitResponse:
        await self._cases.splits.delete(
            require_identity().user_id, request.portfolio_id, request.id
        )
        return portfolio_pb2.DeleteSplitResponse()
