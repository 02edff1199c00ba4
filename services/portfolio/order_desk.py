"""Orders as use cases: placing, listing, reading and cancelling them for their owner, and, for
the market leader's matcher (order_matcher.py), filling, rejecting, triggering and expiring them.

A fill is one transaction: the trade goes through `Trades.append` (which locks the portfolio
and checks cash and shares against its book) and the order is marked FILLED with the trade's id
in its `settle` step, just before the commit. The mark is conditional on the order still being
open; when it is not (filled by another replica, cancelled meanwhile) the whole transaction is
rolled back, trade included. So an order is filled at most once, and never without its trade
nor the reverse, whatever crashes or races.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.domain import Split, new_trade
from services.portfolio.events import EventHub
from services.portfolio.market_data import Quote
from services.portfolio.order_messages import order_message
from services.portfolio.order_store import OrderRepository
from services.portfolio.orders import (
    CANCELLED_BY_SPLIT,
    MAX_OPEN_ORDERS,
    SPLIT_ADJUSTED,
    Order,
    OrderDraft,
    OrderStatus,
    OrderType,
    needs_paper,
    not_open,
    order_not_found,
    parse_order,
    split_terms,
    too_many_open,
)
from services.portfolio.records import (
    PORTFOLIO_NOT_FOUND,
    RecordedTrade,
    portfolio_not_found,
    require_portfolio_id,
)
from services.portfolio.repository import PortfolioRepository
from services.portfolio.trades import Trades
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from services.runtime.pagination import Page

log = logging.getLogger(__name__)

# Called inside the transaction that stores a new order, just before it commits (an idempotency
# key's stored answer).
SettleOrder = Callable[[AsyncSession, Order], Awaitable[None]]

EXPIRED_REASON = "DAY_ENDED"


class _NoLongerOpen(Exception):
    """Raised inside a fill's transaction to roll it back: the order ended meanwhile."""


class Orders:
    def __init__(
        self,
        db: Database,
        trades: Trades,
        hub: EventHub,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._db = db
        self._trades = trades
        self._hub = hub
        self._clock = clock

    # --- the owner's -----------------------------------------------------------------------------

    async def place(
        self, user_id: str, draft: OrderDraft, *, settle: SettleOrder | None = None
    ) -> Order:
        portfolio_id = require_portfolio_id(draft.portfolio_id)
        order = parse_order(
            replace(draft, portfolio_id=portfolio_id),
            user_id=user_id,
            id=str(uuid.uuid4()),
            now=self._clock(),
        )
        await self._trades.check_tradable(order.symbol)
        async with self._db.transaction() as session:
            # Locked: two creates at once cannot both see room for the 100th open order.
            await PortfolioRepository(session).lock_paper(portfolio_id, user_id, needs_paper)
            orders = OrderRepository(session)
            if await orders.count_open(portfolio_id) >= MAX_OPEN_ORDERS:
                raise too_many_open()
            await orders.add(order)
            if settle is not None:
                await settle(session, order)
        await self._published(order)
        return order

    async def get(self, user_id: str, order_id: str) -> Order:
        async with self._db.reading() as session:
            found = await OrderRepository(session).get(order_id.strip(), user_id)
        if found is None:
            raise order_not_found(order_id)
        return found

    async def page(
        self, user_id: str, portfolio_id: str, status: OrderStatus | None, page: Page
    ) -> tuple[list[Order], int]:
        portfolio_id = portfolio_id.strip()
        async with self._db.reading() as session:
            if (
                portfolio_id
                and await PortfolioRepository(session).get(portfolio_id, user_id) is None
            ):
                raise portfolio_not_found(portfolio_id)
            return await OrderRepository(session).page(
                user_id,
                portfolio_id=portfolio_id,
                status=status,
                offset=page.offset,
                limit=page.limit,
            )

    async def cancel(self, user_id: str, order_id: str) -> Order:
        now = self._clock()
        async with self._db.transaction() as session:
            orders = OrderRepository(session)
            found = await orders.get(order_id.strip(), user_id)
            if found is None:
                raise order_not_found(order_id)
            if found.status is not OrderStatus.OPEN:
                raise not_open(found)
            if not await orders.change_open(
                found.id, status=OrderStatus.CANCELLED.value, updated_at=now
            ):
                ended = await orders.get(found.id)
                raise not_open(ended or found)
            # As stored: a split may have changed its terms since `found` was read.
            cancelled = await orders.get(found.id) or replace(
                found, status=OrderStatus.CANCELLED, updated_at=now
            )
        await self._published(cancelled)
        return cancelled

    # --- splits --------------------------------------------------------------------------------

    async def follow_splits(
        self, session: AsyncSession, portfolio_id: str, symbol: str, splits: Sequence[Split]
    ) -> list[Order]:
        """Bring the portfolio's open orders of `symbol` to their placed terms under `splits`
        (all it records now), in the caller's transaction, which holds the portfolio's lock;
        the orders changed (announce them once it commits)."""
        now = self._clock()
        repository = OrderRepository(session)
        changed: list[Order] = []
        for order in await repository.open_of(portfolio_id, symbol):
            terms = split_terms(order, splits)
            if terms is None:
                values: dict[str, Any] = {"status": OrderStatus.CANCELLED.value}
                after = replace(order, status=OrderStatus.CANCELLED)
                reason = CANCELLED_BY_SPLIT
            elif terms == order.terms:
                continue
            else:
                placed = order.placed_terms if terms != order.placed_terms else None
                values = {
                    "quantity": terms.quantity,
                    "limit_price": terms.limit_price,
                    "stop_price": terms.stop_price,
                    "placed_quantity": placed.quantity if placed else None,
                    "placed_limit_price": placed.limit_price if placed else None,
                    "placed_stop_price": placed.stop_price if placed else None,
                }
                after = replace(
                    order,
                    quantity=terms.quantity,
                    limit_price=terms.limit_price,
                    stop_price=terms.stop_price,
                    placed=placed,
                )
                reason = SPLIT_ADJUSTED if placed else ""
            if await repository.change_open(
                order.id,
                live_at=now,
                terms=order.terms,
                status_reason=reason,
                updated_at=now,
                **values,
            ):
                changed.append(replace(after, status_reason=reason, updated_at=now))
        return changed

    async def announce(self, changed: Sequence[Order]) -> None:
        """Tell the owner's sockets, and the matcher, of orders a split changed."""
        for order in changed:
            await self._published(order)

    # --- the market leader's ---------------------------------------------------------------------

    async def open_orders(self) -> list[Order]:
        async with self._db.reading() as session:
            return await OrderRepository(session).all_open()

    async def open_order(self, order_id: str) -> Order | None:
        """The order if it is still open."""
        async with self._db.reading() as session:
            found = await OrderRepository(session).get(order_id)
        return found if found is not None and found.status is OrderStatus.OPEN else None

    async def fill(self, order: Order, quote: Quote) -> Order | None:
        """Fill `order` at the tick's price: its trade and its FILLED mark commit together.
        REJECTED with the rule's reason when the book refuses the trade; None when the order
        had ended already (nothing is recorded then). A DAY order whose day is over expires
        instead, whether or not the sweep (`expire_due`) has come by yet: a tick after midnight,
        or a new leader's first step after a night down, must not fill yesterday's orders."""
        now = self._clock()
        # Its day is judged at the tick: one that crossed at 23:59:59 and is read after midnight
        # (the matcher was behind) fills.
        live = min(now, quote.time)
        if order.expires_at is not None and order.expires_at <= live:
            await self._expire(order, now)
            return None
        trade = new_trade(
            order.side,
            order.symbol,
            order.quantity,
            quote.price,
            order.fees,
            now,
            now=now,
            notes=order.notes,
        )
        # A stop fills because its stop was reached: `triggered`, as a stop-limit's is.
        triggered = order.triggered or order.type is OrderType.STOP
        filled = replace(
            order,
            status=OrderStatus.FILLED,
            filled_price=quote.price,
            filled_at=now,
            updated_at=now,
            triggered=triggered,
        )

        async def settle(session: AsyncSession, recorded: Sequence[RecordedTrade]) -> None:
            nonlocal filled
            one = recorded[0]
            filled = replace(filled, trade_id=one.trade.id)
            # On the terms the matcher crossed: a split recorded meanwhile changed them (its
            # order event re-adds the order to the index on its new terms).
            if not await OrderRepository(session).change_open(
                order.id,
                live_at=live,
                terms=order.terms,
                status=OrderStatus.FILLED.value,
                trade_id=one.trade.id,
                filled_price=quote.price,
                filled_at=now,
                updated_at=now,
                triggered=triggered,
            ):
                raise _NoLongerOpen

        try:
            recorded = await self._trades.record_fill(
                order.user_id,
                order.portfolio_id,
                trade,
                source=quote.source,
                order_id=order.id,
                settle=settle,
            )
        except _NoLongerOpen:
            log.info("order ended before its fill", extra={"orderId": order.id})
            return None
        except NotFound as missing:
            if missing.reason == PORTFOLIO_NOT_FOUND:
                return None  # the portfolio was deleted (its orders with it)
            # No rate for its currency (NO_EXCHANGE_RATE), the listing gone: it cannot fill.
            return await self.reject(order, missing.reason)
        except (FailedPrecondition, InvalidArgument) as refused:
            # INSUFFICIENT_SHARES, INSUFFICIENT_CASH; a listing's currency we do not convert.
            return await self.reject(order, refused.reason)
        await self._trades_published(order.user_id, [recorded])
        await self._published(filled)
        return filled

    async def reject(self, order: Order, reason: str) -> Order | None:
        # On the terms the matcher crossed, as a fill is: a split may have changed them.
        return await self._end(
            order,
            OrderStatus.REJECTED,
            reason,
            self._clock(),
            triggered=order.triggered,
            terms=order.terms,
        )

    async def trigger(self, order: Order, at: datetime | None = None) -> Order | None:
        """Mark a stop-limit's stop as reached by the tick at `at`; None when the order had
        ended already, or expires now (a DAY order whose day was over at that tick, as `fill`
        expires one)."""
        now = self._clock()
        live = min(now, at) if at is not None else now
        if order.expires_at is not None and order.expires_at <= live:
            await self._expire(order, now)
            return None
        async with self._db.transaction() as session:
            changed = await OrderRepository(session).change_open(
                order.id, live_at=live, terms=order.terms, triggered=True, updated_at=now
            )
        if not changed:
            return None
        triggered = order.triggered_now(now)
        await self._published(triggered)
        return triggered

    async def expire_due(self) -> list[Order]:
        """End every open DAY order whose day is over; the ones ended now."""
        now = self._clock()
        async with self._db.reading() as session:
            due = await OrderRepository(session).due(now)
        expired: list[Order] = []
        for order in due:
            ended = await self._expire(order, now)
            if ended is not None:
                expired.append(ended)
        return expired

    async def _expire(self, order: Order, now: datetime) -> Order | None:
        return await self._end(order, OrderStatus.EXPIRED, EXPIRED_REASON, now)

    async def _end(
        self, order: Order, status: OrderStatus, reason: str, now: datetime, **more: Any
    ) -> Order | None:
        """End an open order (rejected, expired) and tell its owner; None when it had ended
        already."""
        async with self._db.transaction() as session:
            changed = await OrderRepository(session).change_open(
                order.id, status=status.value, status_reason=reason, updated_at=now, **more
            )
        if not changed:
            return None
        ended = replace(order, status=status, status_reason=reason, updated_at=now)
        await self._published(ended)
        return ended

    # --- events ----------------------------------------------------------------------------------

    async def _published(self, order: Order) -> None:
        await self._hub.publish(
            portfolio_pb2.StreamPortfolioEventsResponse(
                user_id=order.user_id, order=order_message(order)
            )
        )

    async def _trades_published(self, user_id: str, recorded: list[RecordedTrade]) -> None:
        await self._hub.trades_recorded(user_id, recorded)
