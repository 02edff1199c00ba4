"""The portfolio book: trades, FIFO lots, positions, cash, and the rules that keep them honest.

Plain Python and `Decimal`: no I/O, no clock (callers pass `now`), no framework.

Numbers, stated once
--------------------
* Inside the book nothing is rounded. Decimal arithmetic keeps every digit the input carried
  (inputs are at most 12 integer and 8 fraction digits; the default context keeps 28 significant
  digits), so lots, costs and gains add up exactly and a position closed at its own cost shows
  exactly zero gain. Rounding early leaves pennies that never reconcile, the complaint users of
  trackers make most.
* Input is bounded, not rounded: at most `MAX_INTEGER_DIGITS` digits before the point,
  quantities at most `QUANTITY_PLACES` decimal places (fractional shares as brokers sell them),
  prices and fees at most `PRICE_PLACES` (sub-penny quotes, per-share commissions). More digits
  is an error naming the field, never a silent rounding.
* Output is rounded once, at the edge, by the `present_*` functions, with ROUND_HALF_EVEN
  (banker's rounding: no upward drift when many half-cents are rounded and then summed):
  money to 2 places, quantities to 8, prices to 6, ratios (weights, returns as fractions, where
  0.1 is 10%) to 6, percents to 2. An undefined ratio is presented as "" (proto3's empty).

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

Cash, stated once
-----------------
Cash never goes negative. A WITHDRAWAL beyond the cash balance is refused (`InsufficientCash`).
For everything else the book's `CashPolicy` decides: `FUND_SHORTFALL` (the default) lets people
record real trades without first recording the deposits that paid for them: the part of a buy
that cash does not cover counts as money brought in from outside (an implicit deposit, an
external flow for performance). `REQUIRE_CASH` (paper trading) refuses such a buy instead.

Splits, stated once
-------------------
A split multiplies every lot's quantity by its ratio and keeps the lots' cost. The holding is
then rounded down to `QUANTITY_PLACES`, as brokers issue no fraction finer than their scale, and
the fraction below it (the "dust") is sold as cash in lieu the way a SELL would sell it: from the
oldest lots, at the split's price (else the last trade price, split-adjusted); its cost leaves
the basis, the difference is realized, the proceeds are cash. A holding that is all dust closes.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Context, Decimal
from enum import StrEnum

from services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound

ZERO = Decimal(0)
ONE = Decimal(1)

QUANTITY_PLACES = 8
PRICE_PLACES = 6
MONEY_PLACES = 2
RATIO_PLACES = 6
PERCENT_PLACES = 2
MAX_INTEGER_DIGITS = 12
MAX_NOTES = 1000
MAX_INPUT_LENGTH = 64
# A client whose clock runs a little ahead still records "now"; a trade dated later is refused.
CLOCK_SKEW = timedelta(minutes=5)

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_NOT_FINITE = {"nan", "snan", "inf", "infinity"}
_SYMBOL = re.compile(r"\^?[A-Z0-9][A-Z0-9.=-]{0,14}")


# --- numbers in and out ------------------------------------------------------------------------


def parse_decimal(field: str, raw: str, *, places: int = QUANTITY_PLACES) -> Decimal:
    """A wire decimal string as a `Decimal`, or InvalidArgument naming `field`.

    Accepts plain notation only ("187.42", "0.5", ".5", "-3"): no exponents, no separators,
    no NaN or Infinity, at most MAX_INTEGER_DIGITS digits before the point and `places` after
    it (trailing zeros do not count). Signs are checked by the caller's rule, not here.
    """
    text = raw.strip()
    if not text:
        raise InvalidArgument.field(field, "is required")
    if len(text) > MAX_INPUT_LENGTH:
        raise InvalidArgument.field(field, f"has too many digits (at most {MAX_INPUT_LENGTH})")
    if text.lstrip("+-").lower() in _NOT_FINITE:
        raise InvalidArgument.field(field, "must be a finite number")
    if not _DECIMAL.fullmatch(text):
        raise InvalidArgument.field(field, f"must be a decimal number such as 187.42, not {text!r}")
    whole, _, fraction = text.lstrip("+-").partition(".")
    if len(whole.lstrip("0")) > MAX_INTEGER_DIGITS:
        raise InvalidArgument.field(
            field, f"has too many digits (at most {MAX_INTEGER_DIGITS} before the decimal point)"
        )
    if len(fraction.rstrip("0")) > places:
        raise InvalidArgument.field(field, f"has too many decimal places (at most {places})")
    return Decimal(text)


def _rounded(value: Decimal, places: int, *, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    # A context as precise as the value needs: a huge figure (a 15 % gain in a day, annualized,
    # is about 1e22) has more digits than the default 28 and must still be stated, not raise.
    precision = max(28, value.adjusted() + places + 2)
    result = value.quantize(
        Decimal(1).scaleb(-places), rounding=rounding, context=Context(prec=precision)
    )
    return abs(result) if result == 0 else result  # never "-0.00"


def present_money(value: Decimal) -> str:
    """Money for the wire: 2 places, half-even ("1234.50")."""
    return format(_rounded(value, MONEY_PLACES), "f")


def present_quantity(value: Decimal) -> str:
    """A quantity for the wire: at most 8 places, no trailing zeros ("10", "0.5")."""
    return format(_rounded(value, QUANTITY_PLACES).normalize(), "f")


def present_price(value: Decimal) -> str:
    """A price for the wire: at most 6 places, at least 2 ("187.40", "0.000123")."""
    price = _rounded(value, PRICE_PLACES).normalize()
    exponent = price.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -MONEY_PLACES:
        price = _rounded(price, MONEY_PLACES)
    return format(price, "f")


def present_ratio(value: Decimal | None) -> str:
    """A fraction (weight, return; 0.1 is 10%) for the wire: 6 places; undefined is ""."""
    return "" if value is None else format(_rounded(value, RATIO_PLACES), "f")


def present_percent(value: Decimal | None) -> str:
    """A fraction shown as a percent for the wire: 0.12345 -> "12.35"; undefined is ""."""
    return "" if value is None else format(_rounded(value * 100, PERCENT_PLACES), "f")


def ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    """numerator / denominator, or None when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else None


# --- errors ------------------------------------------------------------------------------------


class InsufficientShares(FailedPrecondition):
    """A SELL of more than is held at that moment; nothing is recorded."""

    reason = "INSUFFICIENT_SHARES"

    def __init__(self, symbol: str, held: Decimal, requested: Decimal) -> None:
        self.symbol = symbol
        self.held = held
        self.requested = requested
        self.shortfall = requested - held
        super().__init__(
            f"cannot sell {present_quantity(requested)} {symbol}: only {present_quantity(held)}"
            f" held (short by {present_quantity(self.shortfall)})"
        )


class InsufficientCash(FailedPrecondition):
    """A withdrawal (or, under REQUIRE_CASH, a buy) that needs more cash than there is."""

    reason = "INSUFFICIENT_CASH"

    def __init__(self, action: str, required: Decimal, available: Decimal) -> None:
        self.action = action
        self.required = required
        self.available = available
        self.shortfall = required - available
        super().__init__(
            f"cannot {action}: needs {present_money(required)} in cash, only"
            f" {present_money(available)} available (short by {present_money(self.shortfall)})"
        )


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
        return self in (Side.BUY, Side.SELL)

    @property
    def names_symbol(self) -> bool:
        return self in (Side.BUY, Side.SELL, Side.DIVIDEND)


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
        if self.side in (Side.BUY, Side.WITHDRAWAL):
            return -(self.amount + self.fees)
        return self.amount - self.fees

    @property
    def day(self) -> date:
        """The UTC calendar day of the trade (performance works in UTC days)."""
        return self.executed_at.astimezone(UTC).date()


@dataclass(frozen=True)
class Split:
    """A stock split: from `effective_at` on, each share is `ratio` shares (3:2 is 1.5;
    a 1-for-10 reverse split is 0.1). Lots keep their cost. Optional: no SPLIT side exists on
    the wire yet; the caller supplies splits from market data.

    `price` is the price of one share after the split, at which the fraction of a share left
    below QUANTITY_PLACES is paid out as cash in lieu; without it, the last trade price here
    (split-adjusted) is used."""

    symbol: str
    ratio: Decimal
    effective_at: datetime
    price: Decimal | None = None

    def __post_init__(self) -> None:
        if not self.ratio.is_finite() or self.ratio <= 0:
            raise InvalidArgument.field("ratio", "must be greater than zero")
        if self.price is not None and (not self.price.is_finite() or self.price <= 0):
            raise InvalidArgument.field("price", "must be greater than zero")
        if self.effective_at.tzinfo is None:
            raise InvalidArgument.field("effective_at", "must include a time zone")

    @property
    def day(self) -> date:
        return self.effective_at.astimezone(UTC).date()


def normalize_symbol(raw: str) -> str:
    """Symbols compare in upper case without surrounding space ("brk.b" -> "BRK.B")."""
    symbol = raw.strip().upper()
    if not symbol:
        raise InvalidArgument.field("symbol", "is required")
    if not _SYMBOL.fullmatch(symbol):
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
    return Trade(side, clean_symbol, quantity, price, fees, executed_at, sequence, id, notes)


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
        executed_at,
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
    if len(notes) > MAX_NOTES:
        violations.append(("notes", f"must be at most {MAX_NOTES} characters"))


def _check_positive(name: str, value: Decimal, violations: list[tuple[str, str]]) -> None:
    if not value.is_finite() or value <= 0:
        violations.append((name, "must be greater than zero"))


def _invalid_trade(violations: list[tuple[str, str]]) -> InvalidArgument:
    message = "invalid trade: " + "; ".join(f"{name} {problem}" for name, problem in violations)
    return InvalidArgument(message, fields=violations)


# --- the book ----------------------------------------------------------------------------------


class CostMethod(StrEnum):
    """How the cost of sold shares is chosen: the oldest lots first, or the running average."""

    FIFO = "fifo"
    AVERAGE = "average"


class CashPolicy(StrEnum):
    """What a buy that cash does not cover means (see the module docstring)."""

    FUND_SHORTFALL = "fund_shortfall"
    REQUIRE_CASH = "require_cash"


@dataclass(frozen=True)
class Lot:
    """Shares one BUY opened and no SELL has consumed yet. `cost` includes the buy's fees."""

    symbol: str
    quantity: Decimal
    cost: Decimal
    opened_at: datetime
    sequence: int

    @property
    def unit_cost(self) -> Decimal:
        return self.cost / self.quantity

    def split(self, ratio: Decimal) -> Lot:
        return replace(self, quantity=_times(self.quantity, ratio))


@dataclass(frozen=True)
class CashInLieu:
    """The fraction of a share a split left below QUANTITY_PLACES, sold for cash as a SELL
    of `quantity` at `price` would be: `proceeds` went to cash, the shares' cost left the basis
    (`fifo_cost` from the oldest lots, `average_cost` at the running average)."""

    symbol: str
    at: datetime
    quantity: Decimal
    price: Decimal
    proceeds: Decimal
    fifo_cost: Decimal
    average_cost: Decimal

    def cost(self, method: CostMethod) -> Decimal:
        return self.fifo_cost if method is CostMethod.FIFO else self.average_cost

    def realized_gain(self, method: CostMethod) -> Decimal:
        return _minus(self.proceeds, self.cost(method))


@dataclass(frozen=True)
class CashFlow:
    """Money crossing the portfolio's boundary: positive in, negative out.

    Deposits and withdrawals are explicit; `implicit` marks a shortfall funded for a buy
    under CashPolicy.FUND_SHORTFALL. Dividends, fees and trades are not flows: they are
    the portfolio's own performance.
    """

    at: datetime
    amount: Decimal
    implicit: bool = False

    @property
    def day(self) -> date:
        return self.at.astimezone(UTC).date()


@dataclass(frozen=True)
class Position:
    """One symbol's holding, valued at `price`. `weight` is its share of the portfolio's total
    value (cash included), None when unknown or the portfolio is worth nothing."""

    symbol: str
    method: CostMethod
    quantity: Decimal
    cost_basis: Decimal
    average_cost: Decimal | None  # cost_basis / quantity; None when nothing is held
    price: Decimal
    market_value: Decimal
    unrealized_gain: Decimal  # market_value - cost_basis
    realized_gain: Decimal  # sum over sells of (amount - fees - cost of the shares sold)
    dividends: Decimal
    fees: Decimal
    weight: Decimal | None
    lots: tuple[Lot, ...]


@dataclass(frozen=True)
class Totals:
    """The whole portfolio at given prices.

    `total_cost` is the money the investor has put in, net of what was taken out (deposits +
    funded shortfalls - withdrawals), so that `total_value - total_cost == total_gain_loss`
    can be checked on screen. `total_return` is `total_gain_loss / total_cost`, a fraction,
    None when total_cost is not positive. `cost_basis` is the cost of the shares still held.
    Accounting identity: total_gain_loss == realized + unrealized + dividends - the fees of
    cash-side trades (fees of buys and sells are already inside the gains).
    """

    cash: Decimal
    market_value: Decimal
    total_value: Decimal
    cost_basis: Decimal
    total_cost: Decimal
    total_gain_loss: Decimal
    total_return: Decimal | None
    realized_gain: Decimal
    unrealized_gain: Decimal
    dividends: Decimal
    fees: Decimal
    deposits: Decimal
    withdrawals: Decimal
    funded: Decimal


@dataclass
class _Holding:
    symbol: str
    lots: deque[Lot] = field(default_factory=deque)
    quantity: Decimal = ZERO
    fifo_basis: Decimal = ZERO
    average_basis: Decimal = ZERO
    realized_fifo: Decimal = ZERO
    realized_average: Decimal = ZERO
    dividends: Decimal = ZERO
    fees: Decimal = ZERO
    last_price: Decimal | None = None
    last_price_at: datetime | None = None

    def basis(self, method: CostMethod) -> Decimal:
        return self.fifo_basis if method is CostMethod.FIFO else self.average_basis

    def realized(self, method: CostMethod) -> Decimal:
        return self.realized_fifo if method is CostMethod.FIFO else self.realized_average


Event = Trade | Split


def order_key(event: Event) -> tuple[datetime, int, int]:
    """Replay order: time, then a split before trades at the same instant, then sequence."""
    if isinstance(event, Split):
        return (event.effective_at, 0, 0)
    return (event.executed_at, 1, event.sequence)


class Book:
    """A portfolio's trades replayed into lots, positions and cash.

    `record` either applies a trade completely or raises and changes nothing. A trade dated
    before the last one replays the whole history, so a back-dated sell cannot leave a later
    sell short.
    """

    def __init__(self, policy: CashPolicy = CashPolicy.FUND_SHORTFALL) -> None:
        self.policy = policy
        self._events: list[Event] = []
        self._holdings: dict[str, _Holding] = {}
        self._flows: list[CashFlow] = []
        self._cash = ZERO
        self._dividends = ZERO
        self._fees = ZERO
        self._cash_side_fees = ZERO
        self._cash_in_lieu: list[CashInLieu] = []

    @classmethod
    def replay(
        cls,
        trades: Iterable[Trade],
        *,
        splits: Iterable[Split] = (),
        policy: CashPolicy = CashPolicy.FUND_SHORTFALL,
    ) -> Book:
        book = cls(policy)
        events: list[Event] = [*trades, *splits]
        for event in sorted(events, key=order_key):
            book._apply(event)
        return book

    def record(self, event: Event) -> None:
        """Apply one trade (or split); on a rule broken, raise and leave the book unchanged."""
        if not self._events or order_key(event) >= order_key(self._events[-1]):
            self._apply(event)
            return
        trades, splits = self.trades, self.splits
        if isinstance(event, Trade):
            trades = (*trades, event)
        else:
            splits = (*splits, event)
        self._adopt(Book.replay(trades, splits=splits, policy=self.policy))

    # -- reading ---------------------------------------------------------------------------

    @property
    def trades(self) -> tuple[Trade, ...]:
        return tuple(e for e in self._events if isinstance(e, Trade))

    @property
    def splits(self) -> tuple[Split, ...]:
        return tuple(e for e in self._events if isinstance(e, Split))

    @property
    def flows(self) -> tuple[CashFlow, ...]:
        return tuple(self._flows)

    @property
    def cash(self) -> Decimal:
        return self._cash

    @property
    def cash_in_lieu(self) -> tuple[CashInLieu, ...]:
        """The fractions of shares splits paid out in cash, in replay order."""
        return tuple(self._cash_in_lieu)

    @property
    def dividends(self) -> Decimal:
        return self._dividends

    @property
    def fees(self) -> Decimal:
        return self._fees

    @property
    def cash_side_fees(self) -> Decimal:
        """Fees of dividends, deposits and withdrawals: costs outside any position."""
        return self._cash_side_fees

    @property
    def deposits(self) -> Decimal:
        return sum((f.amount for f in self._flows if f.amount > 0 and not f.implicit), ZERO)

    @property
    def funded(self) -> Decimal:
        return sum((f.amount for f in self._flows if f.implicit), ZERO)

    @property
    def withdrawals(self) -> Decimal:
        return -sum((f.amount for f in self._flows if f.amount < 0), ZERO)

    def symbols(self) -> list[str]:
        """Every symbol ever traded or paid a dividend, sorted."""
        return sorted(self._holdings)

    def open_symbols(self) -> list[str]:
        """Symbols with shares held now, sorted."""
        return sorted(s for s, h in self._holdings.items() if h.quantity > 0)

    def quantity(self, symbol: str) -> Decimal:
        holding = self._holdings.get(symbol)
        return holding.quantity if holding else ZERO

    def lots(self, symbol: str) -> tuple[Lot, ...]:
        holding = self._holdings.get(symbol)
        return tuple(holding.lots) if holding else ()

    def realized_gain(self, method: CostMethod = CostMethod.FIFO) -> Decimal:
        return sum((h.realized(method) for h in self._holdings.values()), ZERO)

    def last_trade_price(self, symbol: str) -> tuple[datetime, Decimal] | None:
        """When and at what price `symbol` last traded here (split-adjusted)."""
        holding = self._holdings.get(symbol)
        if holding is None or holding.last_price is None or holding.last_price_at is None:
            return None
        return holding.last_price_at, holding.last_price

    def market_value(self, prices: Mapping[str, Decimal]) -> Decimal:
        """Shares held at `prices`; a symbol without a price is valued at its last trade."""
        return sum(
            (h.quantity * self._price_of(h, prices) for h in self._holdings.values() if h.quantity),
            ZERO,
        )

    def position(
        self,
        symbol: str,
        price: Decimal | None = None,
        *,
        method: CostMethod = CostMethod.FIFO,
        total_value: Decimal | None = None,
    ) -> Position:
        """One symbol's position at `price` (default: its last trade price)."""
        holding = self._holdings.get(symbol)
        if holding is None:
            raise NotFound(f"no trades in {symbol} in this portfolio")
        return self._position(holding, price, method, total_value)

    def positions(
        self,
        prices: Mapping[str, Decimal],
        *,
        method: CostMethod = CostMethod.FIFO,
        include_closed: bool = False,
    ) -> list[Position]:
        """Positions sorted by symbol, weighted within the portfolio's total value."""
        total_value = self._cash + self.market_value(prices)
        return [
            self._position(h, prices.get(h.symbol), method, total_value)
            for _, h in sorted(self._holdings.items())
            if include_closed or h.quantity > 0
        ]

    def totals(
        self, prices: Mapping[str, Decimal], *, method: CostMethod = CostMethod.FIFO
    ) -> Totals:
        market_value = self.market_value(prices)
        cost_basis = sum((h.basis(method) for h in self._holdings.values()), ZERO)
        deposits, withdrawals, funded = self.deposits, self.withdrawals, self.funded
        total_value = self._cash + market_value
        total_cost = deposits + funded - withdrawals
        gain = total_value - total_cost
        return Totals(
            cash=self._cash,
            market_value=market_value,
            total_value=total_value,
            cost_basis=cost_basis,
            total_cost=total_cost,
            total_gain_loss=gain,
            total_return=ratio(gain, total_cost),
            realized_gain=self.realized_gain(method),
            unrealized_gain=market_value - cost_basis,
            dividends=self._dividends,
            fees=self._fees,
            deposits=deposits,
            withdrawals=withdrawals,
            funded=funded,
        )

    # -- applying ----------------------------------------------------------------------------

    def _apply(self, event: Event) -> None:
        if isinstance(event, Split):
            self._apply_split(event)
        else:
            self._apply_trade(event)
        self._events.append(event)

    def _apply_trade(self, trade: Trade) -> None:
        # Every check comes first; past them nothing can fail, so a refusal changes nothing.
        holding = self._holdings.get(trade.symbol) if trade.symbol else None
        if trade.side is Side.SELL:
            held = holding.quantity if holding else ZERO
            if trade.quantity > held:
                raise InsufficientShares(trade.symbol, held, trade.quantity)
        cash = _plus(self._cash, trade.cash_change)
        funded = ZERO
        if cash < 0:
            if trade.side is Side.WITHDRAWAL or self.policy is CashPolicy.REQUIRE_CASH:
                raise InsufficientCash(_action(trade), -trade.cash_change, self._cash)
            funded, cash = -cash, ZERO

        if funded:
            self._flows.append(CashFlow(trade.executed_at, funded, implicit=True))
        if trade.side is Side.DEPOSIT:
            self._flows.append(CashFlow(trade.executed_at, trade.amount))
        elif trade.side is Side.WITHDRAWAL:
            self._flows.append(CashFlow(trade.executed_at, -trade.amount))
        self._cash = cash
        self._fees += trade.fees
        if not trade.side.trades_shares:
            self._cash_side_fees += trade.fees
        if trade.symbol:
            if holding is None:
                holding = self._holdings[trade.symbol] = _Holding(trade.symbol)
            _apply_to_holding(holding, trade)
            if trade.side is Side.DIVIDEND:
                self._dividends += trade.amount

    def _apply_split(self, split: Split) -> None:
        # The split is worked out on a copy of the holding that replaces it at the end, so a
        # failure half-way leaves the book as it was.
        held = self._holdings.get(split.symbol)
        if held is None:
            return
        holding = replace(
            held,
            lots=deque(lot.split(split.ratio) for lot in held.lots),
            quantity=_times(held.quantity, split.ratio),
            last_price=None if held.last_price is None else held.last_price / split.ratio,
        )
        dust = _minus(
            holding.quantity, _rounded(holding.quantity, QUANTITY_PLACES, rounding=ROUND_DOWN)
        )
        lieu = _pay_cash_in_lieu(holding, dust, split) if dust else None
        self._holdings[split.symbol] = holding
        if lieu is not None:
            self._cash = _plus(self._cash, lieu.proceeds)
            self._cash_in_lieu.append(lieu)

    def _adopt(self, other: Book) -> None:
        self._events = other._events
        self._holdings = other._holdings
        self._flows = other._flows
        self._cash = other._cash
        self._dividends = other._dividends
        self._fees = other._fees
        self._cash_side_fees = other._cash_side_fees
        self._cash_in_lieu = other._cash_in_lieu

    def _price_of(self, holding: _Holding, prices: Mapping[str, Decimal]) -> Decimal:
        price = prices.get(holding.symbol, holding.last_price)
        return ZERO if price is None else price

    def _position(
        self,
        holding: _Holding,
        price: Decimal | None,
        method: CostMethod,
        total_value: Decimal | None,
    ) -> Position:
        if price is None:
            price = self._price_of(holding, {})
        basis = holding.basis(method)
        market_value = holding.quantity * price
        return Position(
            symbol=holding.symbol,
            method=method,
            quantity=holding.quantity,
            cost_basis=basis,
            average_cost=basis / holding.quantity if holding.quantity > 0 else None,
            price=price,
            market_value=market_value,
            unrealized_gain=market_value - basis,
            realized_gain=holding.realized(method),
            dividends=holding.dividends,
            fees=holding.fees,
            weight=None if total_value is None else ratio(market_value, total_value),
            lots=tuple(holding.lots),
        )


def _apply_to_holding(holding: _Holding, trade: Trade) -> None:
    holding.fees += trade.fees
    if trade.side is Side.DIVIDEND:
        holding.dividends += trade.amount
        return
    holding.last_price, holding.last_price_at = trade.price, trade.executed_at
    if trade.side is Side.BUY:
        cost = trade.amount + trade.fees
        holding.lots.append(
            Lot(trade.symbol, trade.quantity, cost, trade.executed_at, trade.sequence)
        )
        holding.quantity += trade.quantity
        holding.fifo_basis = _plus(holding.fifo_basis, cost)
        holding.average_basis = _plus(holding.average_basis, cost)
        return
    _sell_shares(holding, trade.quantity, trade.amount - trade.fees)


def _pay_cash_in_lieu(holding: _Holding, dust: Decimal, split: Split) -> CashInLieu:
    """Sell the `dust` a split left in `holding` (its quantity already split) as a SELL would.

    The price is the split's, else the last trade price (already split-adjusted). A holding
    with shares was bought at a price, so the average cost (no gain) is only a last resort.
    """
    if split.price is not None:
        price = split.price
    elif holding.last_price is not None:
        price = holding.last_price
    else:
        price = holding.average_basis / holding.quantity
    proceeds = _times(dust, price)
    fifo_cost, average_cost = _sell_shares(holding, dust, proceeds)
    return CashInLieu(
        split.symbol, split.effective_at, dust, price, proceeds, fifo_cost, average_cost
    )


def _sell_shares(
    holding: _Holding, quantity: Decimal, proceeds: Decimal
) -> tuple[Decimal, Decimal]:
    """Take `quantity` shares out of `holding` for `proceeds`: the oldest lots give them up
    (FIFO), the average basis its running average; the rest of `proceeds` is realized.
    Returns the cost of the shares taken, FIFO and average."""
    fifo_cost = _consume_lots(holding.lots, quantity)
    if quantity == holding.quantity:
        average_cost = holding.average_basis
    else:
        average_cost = holding.average_basis * quantity / holding.quantity
    holding.quantity = _minus(holding.quantity, quantity)
    holding.fifo_basis = _minus(holding.fifo_basis, fifo_cost)
    holding.average_basis = _minus(holding.average_basis, average_cost)
    holding.realized_fifo = _plus(holding.realized_fifo, _minus(proceeds, fifo_cost))
    holding.realized_average = _plus(holding.realized_average, _minus(proceeds, average_cost))
    if holding.quantity == 0:
        # Whatever residue rounding left in the bases belongs to shares no longer held.
        holding.lots.clear()
        holding.fifo_basis = holding.average_basis = ZERO
    return fifo_cost, average_cost


def _consume_lots(lots: deque[Lot], quantity: Decimal) -> Decimal:
    """Take `quantity` shares from the oldest lots; return the cost of what was taken."""
    cost = ZERO
    remaining = quantity
    while remaining > 0 and lots:
        lot = lots[0]
        if lot.quantity <= remaining:
            cost = _plus(cost, lot.cost)
            remaining = _minus(remaining, lot.quantity)
            lots.popleft()
        else:
            part = lot.cost * remaining / lot.quantity
            lots[0] = replace(
                lot, quantity=_minus(lot.quantity, remaining), cost=_minus(lot.cost, part)
            )
            cost = _plus(cost, part)
            remaining = ZERO
    return cost


# Sums, differences and products inside the book keep every digit: the default context keeps
# 28 significant digits, too few for a cost of 1e7 less a part of a cent's cost (1e-30), and a
# rounded difference would let the basis and the cost taken out of it disagree.


def _plus(a: Decimal, b: Decimal) -> Decimal:
    return _exact_context(a, b).add(a, b)


def _minus(a: Decimal, b: Decimal) -> Decimal:
    return _exact_context(a, b).subtract(a, b)


def _times(a: Decimal, b: Decimal) -> Decimal:
    digits = len(a.as_tuple().digits) + len(b.as_tuple().digits)
    return Context(prec=max(28, digits)).multiply(a, b)


def _exact_context(a: Decimal, b: Decimal) -> Context:
    lowest = min(_exponent(a), _exponent(b))
    highest = max(a.adjusted(), b.adjusted()) + 1  # a carry adds a digit
    return Context(prec=max(28, highest - lowest + 1))


def _exponent(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return exponent if isinstance(exponent, int) else 0


def _action(trade: Trade) -> str:
    if trade.side is Side.WITHDRAWAL:
        return f"withdraw {present_money(trade.amount)}"
    if trade.side.trades_shares:
        return f"{trade.side.value} {present_quantity(trade.quantity)} {trade.symbol}"
    return f"record a {trade.side.value} of {present_money(trade.amount)}"
