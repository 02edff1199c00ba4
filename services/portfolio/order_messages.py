"""Orders as protobuf messages, and the order enums of the wire mapped to the domain's."""

from __future__ import annotations

from decimal import Decimal

from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.domain import present_price, present_quantity
from services.portfolio.messages import SIDE_TO_PROTO
from services.portfolio.orders import Order, OrderStatus, OrderType, TimeInForce
from services.runtime.timestamps import timestamp

TYPE_TO_PROTO = {
    OrderType.LIMIT: portfolio_pb2.ORDER_TYPE_LIMIT,
    OrderType.STOP: portfolio_pb2.ORDER_TYPE_STOP,
    OrderType.STOP_LIMIT: portfolio_pb2.ORDER_TYPE_STOP_LIMIT,
}
PROTO_TO_TYPE = {v: k for k, v in TYPE_TO_PROTO.items()}
IN_FORCE_TO_PROTO = {
    TimeInForce.DAY: portfolio_pb2.TIME_IN_FORCE_DAY,
    TimeInForce.GTC: portfolio_pb2.TIME_IN_FORCE_GTC,
}
PROTO_TO_IN_FORCE = {v: k for k, v in IN_FORCE_TO_PROTO.items()}
STATUS_TO_PROTO = {
    OrderStatus.OPEN: portfolio_pb2.ORDER_STATUS_OPEN,
    OrderStatus.FILLED: portfolio_pb2.ORDER_STATUS_FILLED,
    OrderStatus.CANCELLED: portfolio_pb2.ORDER_STATUS_CANCELLED,
    OrderStatus.REJECTED: portfolio_pb2.ORDER_STATUS_REJECTED,
    OrderStatus.EXPIRED: portfolio_pb2.ORDER_STATUS_EXPIRED,
}
PROTO_TO_STATUS = {v: k for k, v in STATUS_TO_PROTO.items()}


def _price(value: Decimal | None) -> str:
    return "" if value is None else present_price(value)


def order_message(order: Order) -> portfolio_pb2.Order:
    message = portfolio_pb2.Order(
        id=order.id,
        portfolio_id=order.portfolio_id,
        symbol=order.symbol,
        side=SIDE_TO_PROTO[order.side],
        type=TYPE_TO_PROTO[order.type],
        quantity=present_quantity(order.quantity),
        limit_price=_price(order.limit_price),
        stop_price=_price(order.stop_price),
        time_in_force=IN_FORCE_TO_PROTO[order.time_in_force],
        status=STATUS_TO_PROTO[order.status],
        status_reason=order.status_reason,
        triggered=order.triggered,
        trade_id=order.trade_id,
        filled_price=_price(order.filled_price),
        created_at=timestamp(order.created_at),
        updated_at=timestamp(order.updated_at),
        fees=present_price(order.fees),
        notes=order.notes,
    )
    if order.filled_at is not None:
        message.filled_at.CopyFrom(timestamp(order.filled_at))
    return message
