"""Limit and stop orders of paper portfolios: the record, the rules of its fields, and when a
price crosses it. Plain Python: no I/O, no framework.

Orders, stated once
-------------------
* LIMIT: a buy fills at a tick at or below `limit_price`, a sell at or above it.
* STOP: a buy fills at a tick at or above `stop_price`, a sell at or below it.
* STOP_LIMIT: once a tick reaches `stop_price` (as a stop would) the order is `triggered` and
  from that tick on fills under the limit rule at `limit_price`.
* A fill is at the tick's price, which for a limit is the limit or better.
* DAY orders expire at the end of the UTC day they were placed; GTC ones stay until filled or
  cancelled.
* An order ends once: FILLED, REJECTED (it crossed, but the trade broke a rule of the book),
  CANCELLED or EXPIRED; nothing changes it after that.
* A split of its symbol that the portfolio records, dated after the order was placed, adjusts
  an open order as brokers adjust open orders (FINRA Rule 5330): a 4-for-1 makes a buy of 10 at
  400 a buy of 40 at 100, the order's worth unchanged. Its terms are always its placed terms
  times every such split (`split_terms`), so taking a split back restores them exactly. Reverse
  splits are adjusted too (brokers cancel them for want of fractional shares; a paper portfolio
  has them). An order the split leaves no share or no price of is cancelled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from decimal import MAX_PREC, ROUND_DOWN, Context, Decimal
from enum import StrEnum
from fractions import Fraction

from services.portfolio.domain import Side, Split, normalize_symbol
from services.portfolio.wire_numbers import PRICE_PLACES, QUANTITY_PLACES, parse_decimal, rounded
from services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound

# Per portfolio: more open orders than this is a runaway client, not a trading plan.
MAX_OPEN_ORDERS = 100
MAX_NOTES = 1000
# An open order's status_reason while a split has changed its terms from those it was placed
# with; an order ended because a split left it no share or no price.
SPLIT_ADJUSTED = "SPLIT_ADJUSTED"
CANCELLED_BY_SPLIT = "CANCELLED_BY_SPLIT"


class OrderType(StrEnum):
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class TimeInForce(StrEnum):
    DAY = "day"
    GTC = "gtc"


class OrderStatus(StrEnum):
    OPEN = "open"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Terms:
    """What an order asks for: how many shares, at which limit and stop."""

    quantity: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None


@dataclass(frozen=True)
class Order:
    id: str
    user_id: str
    portfolio_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    time_in_force: TimeInForce
    status: OrderStatus
    created_at: datetime
    updated_at: datetime
    fees: Decimal = Decimal(0)
    notes: str = ""
    status_reason: str = ""
    triggered: bool = False
    trade_id: str = ""
    filled_price: Decimal | None = None
    filled_at: datetime | None = None
    expires_at: datetime | None = None
    # The terms it was placed with, once a split has adjusted it (None: its terms are those).
    placed: Terms | None = None

    @property
    def terms(self) -> Terms:
        return Terms(self.quantity, self.limit_price, self.stop_price)

    @property
    def placed_terms(self) -> Terms:
        return self.placed if self.placed is not None else self.terms

    @property
    def watch(self) -> tuple[bool, Decimal]:
        """What the order waits for now: (True, p) fires at a price >= p, (False, p) at a price
        <= p. A limit (or a triggered stop-limit) waits for its limit, a stop for its stop."""
        buying = self.side is Side.BUY
        if self.type is OrderType.LIMIT or (self.type is OrderType.STOP_LIMIT and self.triggered):
            assert self.limit_price is not None
            return (not buying, self.limit_price)
        assert self.stop_price is not None
        return (buying, self.stop_price)

    def crossed_by(self, price: Decimal) -> bool:
        above, level = self.watch
        return price >= level if above else price <= level

    @property
    def becomes_limit(self) -> bool:
        """A stop-limit whose stop, once crossed, turns it into a limit rather than a fill."""
        return self.type is OrderType.STOP_LIMIT and not self.triggered

    def triggered_now(self, at: datetime) -> Order:
        return replace(self, triggered=True, updated_at=at)


# scaleb rounds to its context's precision: exact, whatever the digits.
_EXACT = Context(prec=MAX_PREC)


def split_terms(order: Order, splits: Iterable[Split]) -> Terms | None:
    """The order's placed terms after every split of its symbol that takes effect after it was
    placed (one placed on a split's day was placed at split prices); None when they leave it no
    share or no price. A buy's shares and every price: exact in fractions, rounded once (shares
    down to QUANTITY_PLACES, prices half-even). A sell's shares: down at each split, as the book
    rounds the holding (a sell of the whole holding stays the whole holding)."""
    later = sorted(
        (s for s in splits if s.symbol == order.symbol and s.effective_at > order.created_at),
        key=lambda s: s.effective_at,
    )
    factor = Fraction(1)
    for split in later:
        factor *= Fraction(split.ratio) / split.of
    placed = order.placed_terms
    if not later:
        return placed
    if order.side is Side.SELL:
        # As the book rounds the holding: down at each split (the rest is paid in cash), so
        # that a sell of the whole holding stays the whole holding.
        quantity = placed.quantity
        for split in later:
            quantity = rounded(split.scale(quantity), QUANTITY_PLACES, rounding=ROUND_DOWN)
    else:
        units = Fraction(placed.quantity) * factor * 10**QUANTITY_PLACES
        quantity = Decimal(math.floor(units)).scaleb(-QUANTITY_PLACES, _EXACT)

    def price(value: Decimal | None) -> Decimal | None:
        if value is None:
            return None
        units = Fraction(value) / factor * 10**PRICE_PLACES
        return Decimal(round(units)).scaleb(-PRICE_PLACES, _EXACT)  # round(): half-even, exactly

    terms = Terms(quantity, price(placed.limit_price), price(placed.stop_price))
    if quantity <= 0 or any(
        p is not None and p <= 0 for p in (terms.limit_price, terms.stop_price)
    ):
        return None
    return terms


@dataclass(frozen=True)
class OrderDraft:
    """An order as the caller sent it: wire strings, checked by `parse_order`."""

    portfolio_id: str
    symbol: str
    side: Side | None
    type: OrderType | None
    quantity: str
    limit_price: str = ""
    stop_price: str = ""
    time_in_force: TimeInForce | None = None
    fees: str = ""
    notes: str = ""


def end_of_day(at: datetime) -> datetime:
    """The end of `at`'s UTC day: when a DAY order placed at `at` expires."""
    day = at.astimezone(UTC).date()
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def parse_order(draft: OrderDraft, *, user_id: str, id: str, now: datetime) -> Order:
    """An open order from wire strings, or InvalidArgument listing every field (as the wire
    names them) that breaks a rule."""
    violations: list[tuple[str, str]] = []

    def number(name: str, raw: str, places: int) -> Decimal | None:
        try:
            value = parse_decimal(name, raw, places=places)
        except InvalidArgument as problem:
            violations.extend(problem.fields)
            return None
        if value <= 0:
            violations.append((name, "must be greater than zero"))
            return None
        return value

    symbol = ""
    try:
        symbol = normalize_symbol(draft.symbol)
    except InvalidArgument as problem:
        violations.extend(problem.fields)
    if draft.side not in (Side.BUY, Side.SELL):
        violations.append(("side", "must be buy or sell"))
    if draft.type is None:
        violations.append(("type", "must be limit, stop or stop_limit"))
    quantity = number("quantity", draft.quantity, QUANTITY_PLACES)
    kind = draft.type.value if draft.type else ""

    def price_if(wanted: bool, name: str, raw: str) -> Decimal | None:
        """The price `name`, required when the order's type `wanted` it, else refused."""
        if not raw.strip():
            if wanted:
                violations.append((name, f"is required for a {kind} order"))
            return None
        if not wanted:
            violations.append((name, f"must be empty for a {kind} order"))
        return number(name, raw, PRICE_PLACES)

    limit = price_if(
        draft.type in (OrderType.LIMIT, OrderType.STOP_LIMIT), "limitPrice", draft.limit_price
    )
    stop = price_if(
        draft.type in (OrderType.STOP, OrderType.STOP_LIMIT), "stopPrice", draft.stop_price
    )
    fees = Decimal(0)
    if draft.fees.strip():
        try:
            fees = parse_decimal("fees", draft.fees, places=PRICE_PLACES)
        except InvalidArgument as problem:
            violations.extend(problem.fields)
        if fees < 0:
            violations.append(("fees", "must not be negative"))
    if len(draft.notes) > MAX_NOTES:
        violations.append(("notes", f"must be at most {MAX_NOTES} characters"))
    if violations or quantity is None or draft.side is None or draft.type is None:
        message = "invalid order: " + "; ".join(f"{f} {d}" for f, d in violations)
        raise InvalidArgument(message, fields=violations)
    in_force = draft.time_in_force or TimeInForce.DAY
    return Order(
        id=id,
        user_id=user_id,
        portfolio_id=draft.portfolio_id,
        symbol=symbol,
        side=draft.side,
        type=draft.type,
        quantity=quantity,
        limit_price=limit,
        stop_price=stop,
        time_in_force=in_force,
        status=OrderStatus.OPEN,
        created_at=now,
        updated_at=now,
        fees=fees,
        notes=draft.notes,
        expires_at=end_of_day(now) if in_force is TimeInForce.DAY else None,
    )


def order_not_found(order_id: str) -> NotFound:
    """Also the answer for another user's order: its existence is not disclosed."""
    return NotFound(f"order {order_id} not found", reason="ORDER_NOT_FOUND")


def needs_paper() -> FailedPrecondition:
    return FailedPrecondition(
        "orders are for paper portfolios: a tracking portfolio records real trades by hand",
        reason="ORDERS_NEED_PAPER_PORTFOLIO",
    )


def too_many_open() -> FailedPrecondition:
    return FailedPrecondition(
        f"a portfolio holds at most {MAX_OPEN_ORDERS} open orders: cancel one first",
        reason="TOO_MANY_OPEN_ORDERS",
    )


def not_open(order: Order) -> FailedPrecondition:
    return FailedPrecondition(
        f"order {order.id} is {order.status.value}: only an open order can be cancelled",
        reason="ORDER_NOT_OPEN",
    )
