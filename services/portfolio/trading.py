"""Trades and splits as the book takes them: sides, the records, and wire input checked.

Trades, stated once
-------------------
* Every trade keeps the wire shape of CreateTradeRequest: symbol, side, quantity, price, fees,
  executed_at. Its gross amount is always `quantity * price`.
* BUY and SELL trade `quantity` shares at `price`; a BUY costs `amount + fees`, a SELL yields
  `amount - fees`.
* Cash sides carry their money as `quantity * price` too: send the amount as `quantity` with
  `price` "1" or empty (`parse_trade` reads an empty price as 1). A DIVIDEND may instead be sent
  as shares * dividend per share. DIVIDEND names its symbol; DEPOSIT and WITHDRAWAL name none.
  Fees on a cash side (a wire fee, withheld tax) reduce cash: a deposit adds `amount - fees`,
  a dividend `amount - fees`, a withdrawal removes `amount + fees`.
* Trades are replayed in time order, ties broken by `sequence` (the order they were recorded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal
from enum import StrEnum

from services.portfolio.exact import times
from services.portfolio.wire_numbers import (
    ONE,
    PRICE_PLACES,
    QUANTITY_PLACES,
    parse_decimal,
)
from services.runtime.errors import InvalidArgument

MAX_NOTES = 1000
# A client whose clock runs a little ahead still records "now" (its trade is dated now: a time
# ahead of the clock's would be a day ahead near midnight, which performance, up to the close
# of today, leaves out); a trade dated later is refused.
CLOCK_SKEW = timedelta(minutes=5)
# The first day a trade may be dated: before it there is nothing to price, and a range starting
# a day before year 1 cannot be computed (performance failed on every range for such a trade).
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
# A normalized (upper-case) ticker; the facade checks socket subscriptions with it too.
SYMBOL = re.compile(r"\^?[A-Z0-9][A-Z0-9.=-]{0,14}")


# --- trades ------------------------------------------------------------------------------------


class Side(StrEnum):
    """What a trade does. Values are the wire's short enum names."""

    BUY = "buy"
    SELL = "sell"
    DIVIDEND = "dividend"
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"

    @property
    def trades_shares(self) -> bool:
        return self in SHARE_SIDES

    @property
    def names_symbol(self) -> bool:
        return self in _SYMBOL_SIDES


# Sets made once: a member named on its class costs a descriptor call (Python 3.11), and the
# book asks these of every trade it replays.
SHARE_SIDES = frozenset((Side.BUY, Side.SELL))
_SYMBOL_SIDES = frozenset((Side.BUY, Side.SELL, Side.DIVIDEND))
_CASH_OUT_SIDES = frozenset((Side.BUY, Side.WITHDRAWAL))


@dataclass(frozen=True)
class Trade:
    """One recorded event of a portfolio. Build it with `new_trade` or `parse_trade`."""

    side: Side
    symbol: str  # "" for DEPOSIT and WITHDRAWAL
    quantity: Decimal
    price: Decimal
    fees: Decimal
    executed_at: datetime
    sequence: int = 0
    id: str = ""
    notes: str = ""

    @property
    def amount(self) -> Decimal:
        """Gross amount: shares * price, or the cash a cash side moves."""
        return self.quantity * self.price

    @property
    def cash_change(self) -> Decimal:
        """What the trade does to the cash balance, fees included."""
        if self.side in _CASH_OUT_SIDES:
            return -(self.amount + self.fees)
        return self.amount - self.fees

    @property
    def day(self) -> date:
        """The UTC calendar day of the trade (performance works in UTC days)."""
        return self.executed_at.astimezone(UTC).date()


@dataclass(frozen=True)
class Split:
    """A stock split: from `effective_at` on, every `of` shares are `ratio` shares (3:2 is
    ratio 1.5, or 3 of 2; a 1-for-3 reverse split is 1 of 3, which no decimal ratio states
    exactly). Lots keep their cost. A portfolio records its splits (services.portfolio.splits).

    `price` is the price of one share after the split, at which the fraction of a share left
    below QUANTITY_PLACES is paid out as cash in lieu; without it, the last trade price here
    (split-adjusted) is used."""

    symbol: str
    ratio: Decimal
    effective_at: datetime
    price: Decimal | None = None
    of: int = 1

    def __post_init__(self) -> None:
        if not self.ratio.is_finite() or self.ratio <= 0:
            raise InvalidArgument.field("ratio", "must be greater than zero")
        if self.of < 1:
            raise InvalidArgument.field("of", "must be at least 1")
        if self.price is not None and (not self.price.is_finite() or self.price <= 0):
            raise InvalidArgument.field("price", "must be greater than zero")
        if self.effective_at.tzinfo is None:
            raise InvalidArgument.field("effective_at", "must include a time zone")

    @property
    def day(self) -> date:
        return self.effective_at.astimezone(UTC).date()

    def scale(self, quantity: Decimal) -> Decimal:
        """`quantity` shares after the split: exact when `of` is 1 or divides it, else to
        SPLIT_DIGITS significant digits (the holding is then rounded down to its scale)."""
        scaled = times(quantity, self.ratio)
        return scaled if self.of == 1 else _SPLIT_CONTEXT.divide(scaled, Decimal(self.of))

    def unscale(self, price: Decimal) -> Decimal:
        """A price per share before the split as the price per share after it."""
        return _SPLIT_CONTEXT.divide(times(price, Decimal(self.of)), self.ratio)


# Far more digits than any quantity (12 + 8) or price keeps: a split's inexact division is
# rounded where it cannot matter, before the holding is rounded down to QUANTITY_PLACES.
SPLIT_DIGITS = 40
_SPLIT_CONTEXT = Context(prec=SPLIT_DIGITS)


def normalize_symbol(raw: str) -> str:
    """Symbols compare in upper case without surrounding space ("brk.b" -> "BRK.B")."""
    symbol = raw.strip().upper()
    if not symbol:
        raise InvalidArgument.field("symbol", "is required")
    if not SYMBOL.fullmatch(symbol):
        raise InvalidArgument.field(
            "symbol", "must be up to 16 letters, digits, '.', '-', '=' or a leading '^'"
        )
    return symbol


def new_trade(
    side: Side,
    symbol: str,
    quantity: Decimal,
    price: Decimal,
    fees: Decimal,
    executed_at: datetime,
    *,
    now: datetime,
    sequence: int = 0,
    id: str = "",
    notes: str = "",
) -> Trade:
    """A trade that obeys the rules, or InvalidArgument listing every field that breaks one."""
    violations: list[tuple[str, str]] = []
    clean_symbol = _check_symbol(side, symbol, violations)
    _check_positive("quantity", quantity, violations)
    _check_positive("price", price, violations)
    _check_fees(fees, violations)
    _check_time_and_notes(executed_at, now, notes, violations)
    if violations:
        raise _invalid_trade(violations)
    return Trade(
        side, clean_symbol, quantity, price, fees, min(executed_at, now), sequence, id, notes
    )


def parse_trade(
    side: Side,
    symbol: str,
    quantity: str,
    price: str,
    fees: str,
    executed_at: datetime,
    *,
    now: datetime,
    sequence: int = 0,
    id: str = "",
    notes: str = "",
) -> Trade:
    """A trade from wire strings, or InvalidArgument listing every field that breaks a rule.

    An empty price means 1 on a cash side; on BUY or SELL it is refused, so the caller fills in
    the market price first. Empty fees mean 0.
    """
    violations: list[tuple[str, str]] = []
    clean_symbol = _check_symbol(side, symbol, violations)
    parsed_quantity = _parse_into(violations, "quantity", quantity, QUANTITY_PLACES)
    if parsed_quantity is not None:
        _check_positive("quantity", parsed_quantity, violations)
    if not price.strip() and not side.trades_shares:
        parsed_price: Decimal | None = ONE
    else:
        parsed_price = _parse_into(violations, "price", price, PRICE_PLACES)
    if parsed_price is not None:
        _check_positive("price", parsed_price, violations)
    parsed_fees = _parse_into(violations, "fees", fees if fees.strip() else "0", PRICE_PLACES)
    if parsed_fees is not None:
        _check_fees(parsed_fees, violations)
    _check_time_and_notes(executed_at, now, notes, violations)
    if violations or parsed_quantity is None or parsed_price is None or parsed_fees is None:
        raise _invalid_trade(violations)
    return Trade(
        side,
        clean_symbol,
        parsed_quantity,
        parsed_price,
        parsed_fees,
        min(executed_at, now),
        sequence,
        id,
        notes,
    )


def _parse_into(
    violations: list[tuple[str, str]], name: str, raw: str, places: int
) -> Decimal | None:
    try:
        return parse_decimal(name, raw, places=places)
    except InvalidArgument as problem:
        violations.extend(problem.fields)
        return None


def _check_symbol(side: Side, symbol: str, violations: list[tuple[str, str]]) -> str:
    if not side.names_symbol:
        if symbol.strip():
            violations.append(("symbol", f"must be empty for a {side.value}"))
        return ""
    if not symbol.strip():
        violations.append(("symbol", f"is required for a {side.value}"))
        return ""
    try:
        return normalize_symbol(symbol)
    except InvalidArgument as problem:
        violations.extend(problem.fields)
        return ""


def _check_fees(fees: Decimal, violations: list[tuple[str, str]]) -> None:
    if not fees.is_finite() or fees < 0:
        violations.append(("fees", "must not be negative"))


def _check_time_and_notes(
    executed_at: datetime, now: datetime, notes: str, violations: list[tuple[str, str]]
) -> None:
    if executed_at.tzinfo is None:
        violations.append(("executed_at", "must include a time zone"))
    elif executed_at > now + CLOCK_SKEW:
        violations.append(("executed_at", "must not be in the future"))
    elif executed_at < EARLIEST:
        violations.append(("executed_at", "must not be before 1900-01-01"))
    if len(notes) > MAX_NOTES:
        violations.append(("notes", f"must be at most {MAX_NOTES} characters"))


def _check_positive(name: str, value: Decimal, violations: list[tuple[str, str]]) -> None:
    if not value.is_finite() or value <= 0:
        violations.append((name, "must be greater than zero"))


def _invalid_trade(violations: list[tuple[str, str]]) -> InvalidArgument:
    message = "invalid trade: " + "; ".join(f"{name} {problem}" for name, problem in violations)
    return InvalidArgument(message, fields=violations)


# --- the book ----------------------------------------------------------------------------------
