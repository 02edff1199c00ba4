"""Loads and saves orders; hides SQLAlchemy from the rest.

Every change of an order is `UPDATE ... WHERE id = ? AND status = 'open'`, which reports whether
it applied: two replicas (or a cancel racing a fill) can both try, and only one ends the order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.domain import Side
from services.portfolio.orders import Order, OrderStatus, OrderType, Terms, TimeInForce
from services.portfolio.orm import orders


def _order(row: Any) -> Order:
    placed = None
    if row.placed_quantity is not None:
        placed = Terms(row.placed_quantity, row.placed_limit_price, row.placed_stop_price)
    return Order(
        id=row.id,
        user_id=row.user_id,
        portfolio_id=row.portfolio_id,
        symbol=row.symbol,
        side=Side(row.side),
        type=OrderType(row.type),
        quantity=row.quantity,
        limit_price=row.limit_price,
        stop_price=row.stop_price,
        time_in_force=TimeInForce(row.time_in_force),
        status=OrderStatus(row.status),
        created_at=row.created_at,
        updated_at=row.updated_at,
        fees=row.fees,
        notes=row.notes,
        status_reason=row.status_reason,
        triggered=bool(row.triggered),
        trade_id=row.trade_id or "",
        filled_price=row.filled_price,
        filled_at=row.filled_at,
        expires_at=row.expires_at,
        placed=placed,
    )


def _same_terms(terms: Terms) -> list[Any]:
    """Conditions that the stored order still asks for `terms` (no split adjusted it since)."""
    return [
        orders.c.quantity == terms.quantity,
        orders.c.limit_price.is_(None)
        if terms.limit_price is None
        else orders.c.limit_price == terms.limit_price,
        orders.c.stop_price.is_(None)
        if terms.stop_price is None
        else orders.c.stop_price == terms.stop_price,
    ]


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, order: Order) -> None:
        await self._session.execute(
            insert(orders).values(
                id=order.id,
                user_id=order.user_id,
                portfolio_id=order.portfolio_id,
                symbol=order.symbol,
                side=order.side.value,
                type=order.type.value,
                quantity=order.quantity,
                limit_price=order.limit_price,
                stop_price=order.stop_price,
                time_in_force=order.time_in_force.value,
                status=order.status.value,
                status_reason=order.status_reason,
                triggered=order.triggered,
                fees=order.fees,
                notes=order.notes,
                expires_at=order.expires_at,
                created_at=order.created_at,
                updated_at=order.updated_at,
            )
        )

    async def get(self, order_id: str, user_id: str | None = None) -> Order | None:
        """The order; with `user_id`, only if it is theirs."""
        query = select(orders).where(orders.c.id == order_id)
        if user_id is not None:
            query = query.where(orders.c.user_id == user_id)
        row = (await self._session.execute(query)).first()
        return _order(row) if row else None

    async def page(
        self,
        user_id: str,
        *,
        portfolio_id: str,
        status: OrderStatus | None,
        offset: int,
        limit: int,
    ) -> tuple[list[Order], int]:
        """The user's orders, newest first."""
        where = [orders.c.user_id == user_id]
        if portfolio_id:
            where.append(orders.c.portfolio_id == portfolio_id)
        if status is not None:
            where.append(orders.c.status == status.value)
        total = (
            await self._session.execute(select(func.count()).select_from(orders).where(*where))
        ).scalar_one()
        rows = await self._session.execute(
            select(orders)
            .where(*where)
            .order_by(orders.c.created_at.desc(), orders.c.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return [_order(r) for r in rows], int(total)

    async def count_open(self, portfolio_id: str) -> int:
        query = (
            select(func.count())
            .select_from(orders)
            .where(orders.c.portfolio_id == portfolio_id, orders.c.status == OrderStatus.OPEN)
        )
        return int((await self._session.execute(query)).scalar_one())

    async def open_of(self, portfolio_id: str, symbol: str) -> list[Order]:
        rows = await self._session.execute(
            select(orders).where(
                orders.c.portfolio_id == portfolio_id,
                orders.c.symbol == symbol,
                orders.c.status == OrderStatus.OPEN.value,
            )
        )
        return [_order(r) for r in rows]

    async def all_open(self) -> list[Order]:
        rows = await self._session.execute(
            select(orders).where(orders.c.status == OrderStatus.OPEN.value)
        )
        return [_order(r) for r in rows]

    async def due(self, now: datetime) -> list[Order]:
        """Open orders whose day has ended."""
        rows = await self._session.execute(
            select(orders).where(
                orders.c.status == OrderStatus.OPEN.value, orders.c.expires_at <= now
            )
        )
        return [_order(r) for r in rows]

    async def change_open(
        self,
        order_id: str,
        *,
        live_at: datetime | None = None,
        terms: Terms | None = None,
        **values: Any,
    ) -> bool:
        """Apply `values` to the order if it is still open (with `live_at`: and its day not over
        then, whether or not it has been marked expired yet; with `terms`: and it still asks
        for them); whether it was."""
        query = update(orders).where(
            orders.c.id == order_id, orders.c.status == OrderStatus.OPEN.value
        )
        if terms is not None:
            query = query.where(*_same_terms(terms))
        if live_at is not None:
            query = query.where(or_(orders.c.expires_at.is_(None), orders.c.expires_at > live_at))
        result = await self._session.execute(query.values(**values))
        return bool(getattr(result, "rowcount", 0) == 1)
