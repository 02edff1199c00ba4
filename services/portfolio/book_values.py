"""What the book answers and keeps, as plain values: its refusals and policies, the sales, flows
and cash in lieu it records, positions and totals, and its state without the history (the rules
that make them: book.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple, Protocol

from services.portfolio.exact import minus as _minus
from services.portfolio.exact import times as _times
from services.portfolio.exact import total as _total
from services.portfolio.lots import Lot, Lots
from services.portfolio.trading import Split, Trade
from services.portfolio.wire_numbers import ZERO, present_money, present_quantity, ratio
from services.runtime.errors import FailedPrecondition


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


class HistoryMissing(Exception):
    """A back-dated event for a book resumed from its state: only a replay of the whole
    history can place it. Not a rule the caller broke: whoever resumed the book must replay."""

    def __init__(self, event: Event) -> None:
        super().__init__(f"an event dated before the book's state needs a replay: {event!r}")


class CostMethod(StrEnum):
    """How the cost of sold shares is chosen: the oldest lots first, or the running average."""

    FIFO = "fifo"
    AVERAGE = "average"


class CashPolicy(StrEnum):
    """What a buy that cash does not cover means (see the module docstring)."""

    FUND_SHORTFALL = "fund_shortfall"
    REQUIRE_CASH = "require_cash"


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
class Sale:
    """Shares that left a holding for money, as the replay took them: a SELL (`trade_id`,
    `sequence`), or the fraction a split paid in cash (`in_lieu`; no trade). `proceeds` is net
    of the sale's fees; `lots` are the pieces of the oldest lots it closed (FIFO), each with its
    cost and the time its buy opened it; `average_cost` is its cost at the running average.
    `proceeds` less the pieces' costs (or `average_cost`) is exactly what it realized."""

    symbol: str
    at: datetime
    quantity: Decimal
    proceeds: Decimal
    lots: tuple[Lot, ...]
    average_cost: Decimal
    trade_id: str = ""
    sequence: int = 0
    in_lieu: bool = False

    @property
    def day(self) -> date:
        return self.at.astimezone(UTC).date()


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


@dataclass(frozen=True)
class HoldingState:
    """One symbol's holding as a `BookState` keeps it (a `holdings.LiveHolding`, frozen)."""

    symbol: str
    lots: Lots  # never changed: a book resumed from the state takes a copy
    quantity: Decimal
    fifo_basis: Decimal
    average_basis: Decimal
    realized_fifo: Decimal
    realized_average: Decimal
    dividends: Decimal
    fees: Decimal
    last_price: Decimal | None
    last_price_at: datetime | None


@dataclass(frozen=True)
class BookState:
    """What a book needs to take its next trade without the trades before it: the open lots,
    bases, realized gains and last prices per symbol, cash and the running totals, and the
    replay position (`through`: the order key of the last event it includes).

    The history itself (trades, splits, flows, cash in lieu) is not part of it: a book resumed
    from a state answers positions, totals and the rules exactly as the full replay does, and
    lists only the events recorded since. `deposits`, `withdrawals` and `funded` are the sums
    of the flows, kept as the flows' own sums are (`withdrawals` as the sum of negative flows).
    """

    policy: CashPolicy
    through: tuple[datetime, int, int] | None
    cash: Decimal
    dividends: Decimal
    fees: Decimal
    cash_side_fees: Decimal
    deposits: Decimal
    withdrawals: Decimal
    funded: Decimal
    holdings: tuple[HoldingState, ...]


class _Traded(Protocol):
    """What `TradedSymbols` reads of a holding (a `HoldingState`, or the book's live one)."""

    @property
    def symbol(self) -> str: ...
    @property
    def quantity(self) -> Decimal: ...
    @property
    def last_price_at(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class TradedSymbols:
    """A book's symbols as `Book.held_since` asks about them, without the lots and figures:
    those held now, and when each other one last traded. Small enough to keep per portfolio
    (the market split job keeps one from round to round instead of decoding the book again:
    tuples and interned symbols, a few hundred bytes for a portfolio of ten)."""

    held: tuple[str, ...]
    last_traded: tuple[tuple[str, datetime], ...]  # the symbols not held now

    @classmethod
    def of(cls, holdings: Iterable[_Traded]) -> TradedSymbols:
        held: list[str] = []
        others: list[tuple[str, datetime]] = []
        for holding in holdings:
            if holding.quantity > 0:
                held.append(sys.intern(holding.symbol))
            elif holding.last_price_at is not None:
                others.append((sys.intern(holding.symbol), holding.last_price_at))
        return cls(tuple(held), tuple(others))

    def since(self, moment: datetime) -> list[str]:
        """Held now, or bought or sold at or after `moment`, sorted: every symbol with shares at
        some time since (one held since and not now was sold since), and a few without (bought
        and sold in between)."""
        return sorted([*self.held, *(s for s, at in self.last_traded if at >= moment)])


class _Priced(Protocol):
    """What a holding's market value reads of it."""

    @property
    def symbol(self) -> str: ...
    @property
    def quantity(self) -> Decimal: ...
    @property
    def last_price(self) -> Decimal | None: ...


class _Valued(_Priced, Protocol):
    """What `BookFigures` reads of a holding (a `HoldingState`, or the book's live one)."""

    @property
    def fifo_basis(self) -> Decimal: ...
    @property
    def average_basis(self) -> Decimal: ...
    @property
    def realized_fifo(self) -> Decimal: ...
    @property
    def realized_average(self) -> Decimal: ...


def price_of(holding: _Priced, prices: Mapping[str, Decimal]) -> Decimal:
    """The holding's price at `prices`; a symbol without one at its last trade (else zero)."""
    price = prices.get(holding.symbol, holding.last_price)
    return ZERO if price is None else price


def market_value(holdings: Iterable[_Priced], prices: Mapping[str, Decimal]) -> Decimal:
    """Shares held at `prices` (`price_of`), summed exactly."""
    return _total(_times(h.quantity, price_of(h, prices)) for h in holdings if h.quantity)


class HeldShares(NamedTuple):
    """A holding with shares, as its market value reads it (a tuple: the collector leaves it
    alone once it holds only numbers and a string)."""

    symbol: str
    quantity: Decimal
    last_price: Decimal | None


@dataclass(frozen=True, slots=True)
class BookFigures:
    """What a book's `totals` at some prices reads of it under one cost method, without the
    lots: the book-wide sums, the held shares, and the cost basis and realized gain of every
    holding already summed (they do not depend on prices). `Book.totals` answers through it, so
    the figures kept of a stored state (the revaluation keeps one per portfolio from round to
    round instead of decoding the book again) give the very same totals as the book."""

    cash: Decimal
    dividends: Decimal
    fees: Decimal
    deposits: Decimal
    withdrawals: Decimal
    funded: Decimal
    cost_basis: Decimal
    realized_gain: Decimal
    held: tuple[HeldShares, ...]  # in the book's order

    @classmethod
    def of(
        cls,
        holdings: Iterable[_Valued],
        *,
        cash: Decimal,
        dividends: Decimal,
        fees: Decimal,
        deposits: Decimal,
        withdrawals: Decimal,
        funded: Decimal,
        method: CostMethod = CostMethod.FIFO,
    ) -> BookFigures:
        every = tuple(holdings)
        fifo = method is CostMethod.FIFO
        return cls(
            cash=cash,
            dividends=dividends,
            fees=fees,
            deposits=deposits,
            withdrawals=withdrawals,
            funded=funded,
            cost_basis=_total(h.fifo_basis if fifo else h.average_basis for h in every),
            realized_gain=_total(h.realized_fifo if fifo else h.realized_average for h in every),
            held=tuple(
                HeldShares(sys.intern(h.symbol), h.quantity, h.last_price)
                for h in every
                if h.quantity
            ),
        )

    @classmethod
    def of_state(cls, state: BookState, method: CostMethod = CostMethod.FIFO) -> BookFigures:
        """The figures of a stored state, without resuming a book from it."""
        return cls.of(
            state.holdings,
            cash=state.cash,
            dividends=state.dividends,
            fees=state.fees,
            deposits=state.deposits,
            withdrawals=state.withdrawals,
            funded=state.funded,
            method=method,
        )

    def open_symbols(self) -> list[str]:
        """Symbols with shares held, sorted (as `Book.open_symbols`)."""
        return sorted(h.symbol for h in self.held if h.quantity > 0)

    def totals(self, prices: Mapping[str, Decimal]) -> Totals:
        value = market_value(self.held, prices)
        deposits, withdrawals, funded = self.deposits, self.withdrawals, self.funded
        total_value = self.cash + value
        total_cost = deposits + funded - withdrawals
        gain = total_value - total_cost
        return Totals(
            cash=self.cash,
            market_value=value,
            total_value=total_value,
            cost_basis=self.cost_basis,
            total_cost=total_cost,
            total_gain_loss=gain,
            total_return=ratio(gain, total_cost),
            realized_gain=self.realized_gain,
            unrealized_gain=value - self.cost_basis,
            dividends=self.dividends,
            fees=self.fees,
            deposits=deposits,
            withdrawals=withdrawals,
            funded=funded,
        )


Event = Trade | Split


def order_key(event: Event) -> tuple[datetime, int, int]:
    """Replay order: time, then a split before trades at the same instant, then sequence."""
    if isinstance(event, Split):
        return (event.effective_at, 0, 0)
    return (event.executed_at, 1, event.sequence)
