"""The order RPCs of PortfolioService (a mixin of the servicer): request -> use case ->
response, as thin as the rest. CreateOrder is idempotent with an `Idempotency-Key`: the stored
answer commits in the order's own transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.messages import PROTO_TO_SIDE
from services.portfolio.order_messages import (
    PROTO_TO_IN_FORCE,
    PROTO_TO_STATUS,
    PROTO_TO_TYPE,
    order_message,
)
from services.portfolio.orders import Order, OrderDraft
from services.runtime.interceptors import require_identity
from services.runtime.pagination import page_of

if TYPE_CHECKING:
    from services.portfolio.servicer import UseCases


class OrderRpcs:
    _cases: UseCases

    async def ListOrders(
        self, request: portfolio_pb2.ListOrdersRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.ListOrdersResponse:
        page = page_of(request.page, request.limit)
        found, total = await self._cases.orders.page(
            require_identity().user_id,
            request.portfolio_id,
            PROTO_TO_STATUS.get(request.status),
            page,
        )
        return portfolio_pb2.ListOrdersResponse(
            orders=[order_message(o) for o in found], pagination=page.describe(total)
        )

    async def CreateOrder(
        self, request: portfolio_pb2.CreateOrderRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.CreateOrderResponse:
        draft = OrderDraft(
            portfolio_id=request.portfolio_id,
            symbol=request.symbol,
            side=PROTO_TO_SIDE.get(request.side),
            type=PROTO_TO_TYPE.get(request.type),
            quantity=request.quantity,
            limit_price=request.limit_price,
            stop_price=request.stop_price,
            time_in_force=PROTO_TO_IN_FORCE.get(request.time_in_force),
            fees=request.fees,
            notes=request.notes,
        )
        user_id = require_identity().user_id

        def respond(order: Order) -> portfolio_pb2.CreateOrderResponse:
            return portfolio_pb2.CreateOrderResponse(order=order_message(order))

        async def create() -> portfolio_pb2.CreateOrderResponse:
            settle = self._cases.idempotency.settling(respond)
            return respond(await self._cases.orders.place(user_id, draft, settle=settle))

        return await self._cases.idempotency.run(request, portfolio_pb2.CreateOrderResponse, create)

    async def GetOrder(
        self, request: portfolio_pb2.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetOrderResponse:
        order = await self._cases.orders.get(require_identity().user_id, request.id)
        return portfolio_pb2.GetOrderResponse(order=order_message(order))

    async def CancelOrder(
        self, request: portfolio_pb2.CancelOrderRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.CancelOrderResponse:
        order = await self._cases.orders.cancel(require_identity().user_id, request.id)
        return portfolio_pb2.CancelOrderResponse(order=order_message(order))
