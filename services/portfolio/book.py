"""The portfolio book: trades replayed into FIFO lots, positions and cash, under the rules
that keep them honest. Plain Python and `Decimal`: no I/O, no clock, no framework.

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

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum
from typing import Any

from services.portfolio.exact import minus as _minus
from services.portfolio.exact import plus as _plus
from services.portfolio.exact import times as _times
from services.portfolio.lots import Lot, Lots
from services.portfolio.trading import SHARE_SIDES, Side, Split, Trade
from services.portfolio.wire_numbers import (
    QUANTITY_PLACES,
    ZERO,
    present_money,
    present_quantity,
    ratio,
    rounded,
)
from services.runtime.errors import FailedPrecondition, NotFound

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


@dataclass
class _Holding:
    symbol: str
    lots: Lots
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


@dataclass(frozen=True)
class HoldingState:
    """One symbol's holding as a `BookState` keeps it (a `_Holding`, frozen)."""

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


Event = Trade | Split


def order_key(event: Event) -> tuple[datetime, int, int]:
    """Replay order: time, then a split before trades at the same instant, then sequence."""
    if isinstance(event, Split):
        return (event.effective_at, 0, 0)
    return (event.executed_at, 1, event.sequence)


# The sides by module name: a member named on its class costs a descriptor call (Python 3.11),
# and every trade replayed asks several.
_BUY, _SELL, _DIVIDEND = Side.BUY, Side.SELL, Side.DIVIDEND
_DEPOSIT, _WITHDRAWAL = Side.DEPOSIT, Side.WITHDRAWAL


class Book:
    """A portfolio's trades replayed into lots, positions and cash.

    `record` either applies a trade completely or raises and changes nothing. A trade dated
    before the last one replays the whole history, so a back-dated sell cannot leave a later
    sell short.

    `state()` is what the book holds now, without its history; `Book.resume(state)` carries on
    from it, taking trades dated at or after the last one it includes (a back-dated one needs
    the history: `record` refuses it with `HistoryMissing`).

    A book made with `sales=True` also keeps every sale it replays (`sales`: the lots each
    closed); others do not pay for it (a realized-gains report asks, positions do not).
    """

    def __init__(
        self, policy: CashPolicy = CashPolicy.FUND_SHORTFALL, *, sales: bool = False
    ) -> None:
        self.policy = policy
        self._events: list[Event] = []
        self._holdings: dict[str, _Holding] = {}
        self._flows: list[CashFlow] = []
        self._cash = ZERO
        self._dividends = ZERO
        self._fees = ZERO
        self._cash_side_fees = ZERO
        self._cash_in_lieu: list[CashInLieu] = []
        self._sales: list[Sale] | None = [] if sales else None
        # The flows' sums, kept as they are added (a resumed book has not got the flows).
        self._deposits = ZERO
        self._outflows = ZERO  # negative: the sum of the flows out
        self._funded = ZERO
        self._through: tuple[datetime, int, int] | None = None
        self._resumed = False

    @classmethod
    def resume(cls, state: BookState) -> Book:
        """A book that carries on from `state` (see the class docstring)."""
        book = cls(state.policy)
        book._through = state.through
        book._resumed = state.through is not None
        book._cash = state.cash
        book._dividends = state.dividends
        book._fees = state.fees
        book._cash_side_fees = state.cash_side_fees
        book._deposits = state.deposits
        book._outflows = -state.withdrawals
        book._funded = state.funded
        for h in state.holdings:
            book._holdings[h.symbol] = _Holding(**_copied(h))
        return book

    def state(self) -> BookState:
        return BookState(
            policy=self.policy,
            through=self._through,
            cash=self._cash,
            dividends=self._dividends,
            fees=self._fees,
            cash_side_fees=self._cash_side_fees,
            deposits=self._deposits,
            withdrawals=-self._outflows,
            funded=self._funded,
            holdings=tuple(
                HoldingState(**_copied(h))
                # In the book's own order (a symbol's first trade): totals add the holdings up
                # in that order, and a sum of 28 digits may end otherwise in another.
                for h in self._holdings.values()
            ),
        )

    @property
    def through(self) -> tuple[datetime, int, int] | None:
        """The order key (`order_key`) of the last event the book includes; None when empty."""
        return self._through

    def takes_in_order(self, event: Event) -> bool:
        """Whether `event` comes at or after everything the book includes (no replay needed)."""
        return self._through is None or order_key(event) >= self._through

    @classmethod
    def replay(
        cls,
        trades: Iterable[Trade],
        *,
        splits: Iterable[Split] = (),
        policy: CashPolicy = CashPolicy.FUND_SHORTFALL,
        sales: bool = False,
    ) -> Book:
        book = cls(policy, sales=sales)
        events: list[Event] = [*trades, *splits]
        for event in sorted(events, key=order_key):
            book._apply(event)
        return book

    def record(self, event: Event) -> None:
        """Apply one trade (or split); on a rule broken, raise and leave the book unchanged."""
        if self.takes_in_order(event):
            self._apply(event)
            return
        if self._resumed:
            raise HistoryMissing(event)
        trades, splits = self.trades, self.splits
        if isinstance(event, Trade):
            trades = (*trades, event)
        else:
            splits = (*splits, event)
        self._adopt(
            Book.replay(trades, splits=splits, policy=self.policy, sales=self._sales is not None)
        )

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
    def flow_count(self) -> int:
        """len(flows), without copying them (a daily series asks every day)."""
        return len(self._flows)

    def flows_since(self, count: int) -> tuple[CashFlow, ...]:
        """The flows added after the first `count`."""
        return tuple(self._flows[count:])

    @property
    def cash(self) -> Decimal:
        return self._cash

    @property
    def cash_in_lieu(self) -> tuple[CashInLieu, ...]:
        """The fractions of shares splits paid out in cash, in replay order."""
        return tuple(self._cash_in_lieu)

    @property
    def sales(self) -> tuple[Sale, ...]:
        """Every sale replayed (sells and cash in lieu), in replay order; empty unless the book
        was made with `sales=True`."""
        return tuple(self._sales or ())

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
        return self._deposits

    @property
    def funded(self) -> Decimal:
        return self._funded

    @property
    def withdrawals(self) -> Decimal:
        return -self._outflows

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
        return _total(h.realized(method) for h in self._holdings.values())

    def last_trade_price(self, symbol: str) -> tuple[datetime, Decimal] | None:
        """When and at what price `symbol` last traded here (split-adjusted)."""
        holding = self._holdings.get(symbol)
        if holding is None or holding.last_price is None or holding.last_price_at is None:
            return None
        return holding.last_price_at, holding.last_price

    def market_value(self, prices: Mapping[str, Decimal]) -> Decimal:
        """Shares held at `prices`; a symbol without a price is valued at its last trade."""
        return _total(
            _times(h.quantity, self._price_of(h, prices))
            for h in self._holdings.values()
            if h.quantity
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
        lots: bool = True,
    ) -> list[Position]:
        """Positions sorted by symbol, weighted within the portfolio's total value; without
        `lots`, their lots are left out (a resumed book's are decoded only when listed)."""
        total_value = self._cash + self.market_value(prices)
        return [
            self._position(h, prices.get(h.symbol), method, total_value, lots=lots)
            for _, h in sorted(self._holdings.items())
            if include_closed or h.quantity > 0
        ]

    def totals(
        self, prices: Mapping[str, Decimal], *, method: CostMethod = CostMethod.FIFO
    ) -> Totals:
        market_value = self.market_value(prices)
        cost_basis = _total(h.basis(method) for h in self._holdings.values())
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
        self._through = order_key(event)

    def _apply_trade(self, trade: Trade) -> None:
        # Every check comes first; past them nothing can fail, so a refusal changes nothing.
        holding = self._holdings.get(trade.symbol) if trade.symbol else None
        if trade.side is _SELL:
            held = holding.quantity if holding else ZERO
            if trade.quantity > held:
                raise InsufficientShares(trade.symbol, held, trade.quantity)
        cash = _plus(self._cash, trade.cash_change)
        funded = ZERO
        if cash < 0:
            if trade.side is _WITHDRAWAL or self.policy is CashPolicy.REQUIRE_CASH:
                raise InsufficientCash(_action(trade), -trade.cash_change, self._cash)
            funded, cash = -cash, ZERO

        if funded:
            self._add_flow(CashFlow(trade.executed_at, funded, implicit=True))
        if trade.side is _DEPOSIT:
            self._add_flow(CashFlow(trade.executed_at, trade.amount))
        elif trade.side is _WITHDRAWAL:
            self._add_flow(CashFlow(trade.executed_at, -trade.amount))
        self._cash = cash
        self._fees += trade.fees
        if trade.side not in SHARE_SIDES:
            self._cash_side_fees += trade.fees
        if trade.symbol:
            if holding is None:
                holding = _Holding(trade.symbol, Lots(trade.symbol))
                self._holdings[trade.symbol] = holding
            _apply_to_holding(holding, trade, self._sales)
            if trade.side is _DIVIDEND:
                self._dividends += trade.amount

    def _add_flow(self, flow: CashFlow) -> None:
        self._flows.append(flow)
        if flow.implicit:
            self._funded += flow.amount
        elif flow.amount > 0:
            self._deposits += flow.amount
        if flow.amount < 0:
            self._outflows += flow.amount

    def _apply_split(self, split: Split) -> None:
        # The split is worked out on a copy of the holding that replaces it at the end, so a
        # failure half-way leaves the book as it was.
        held = self._holdings.get(split.symbol)
        if held is None:
            return
        holding = replace(
            held,
            lots=Lots(split.symbol, (lot.split(split) for lot in held.lots)),
            quantity=split.scale(held.quantity),
            last_price=None if held.last_price is None else split.unscale(held.last_price),
        )
        dust = _minus(
            holding.quantity, rounded(holding.quantity, QUANTITY_PLACES, rounding=ROUND_DOWN)
        )
        closed: list[Lot] | None = None if self._sales is None else []
        lieu = _pay_cash_in_lieu(holding, dust, split, closed) if dust else None
        self._holdings[split.symbol] = holding
        if lieu is not None:
            self._cash = _plus(self._cash, lieu.proceeds)
            self._cash_in_lieu.append(lieu)
            if self._sales is not None and closed is not None:
                self._sales.append(
                    Sale(
                        lieu.symbol,
                        lieu.at,
                        lieu.quantity,
                        lieu.proceeds,
                        tuple(closed),
                        lieu.average_cost,
                        in_lieu=True,
                    )
                )

    def _adopt(self, other: Book) -> None:
        """Takes over everything a replay built: every attribute at once, so that state added
        to the book later cannot be left behind."""
        vars(self).update(vars(other))

    def _price_of(self, holding: _Holding, prices: Mapping[str, Decimal]) -> Decimal:
        price = prices.get(holding.symbol, holding.last_price)
        return ZERO if price is None else price

    def _position(
        self,
        holding: _Holding,
        price: Decimal | None,
        method: CostMethod,
        total_value: Decimal | None,
        *,
        lots: bool = True,
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
            lots=tuple(holding.lots) if lots else (),
        )


def _apply_to_holding(holding: _Holding, trade: Trade, sales: list[Sale] | None) -> None:
    """Apply a share or dividend trade to its holding; a SELL is added to `sales`, if kept."""
    holding.fees += trade.fees
    if trade.side is _DIVIDEND:
        holding.dividends += trade.amount
        return
    holding.last_price, holding.last_price_at = trade.price, trade.executed_at
    if trade.side is _BUY:
        cost = trade.amount + trade.fees
        holding.lots.append(
            Lot(trade.symbol, trade.quantity, cost, trade.executed_at, trade.sequence)
        )
        holding.quantity += trade.quantity
        holding.fifo_basis = _plus(holding.fifo_basis, cost)
        holding.average_basis = _plus(holding.average_basis, cost)
        return
    proceeds = trade.amount - trade.fees
    if sales is None:
        _sell_shares(holding, trade.quantity, proceeds)
        return
    closed: list[Lot] = []
    _, average_cost = _sell_shares(holding, trade.quantity, proceeds, closed)
    sales.append(
        Sale(
            trade.symbol,
            trade.executed_at,
            trade.quantity,
            proceeds,
            tuple(closed),
            average_cost,
            trade.id,
            trade.sequence,
        )
    )


def _pay_cash_in_lieu(
    holding: _Holding, dust: Decimal, split: Split, closed: list[Lot] | None = None
) -> CashInLieu:
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
    fifo_cost, average_cost = _sell_shares(holding, dust, proceeds, closed)
    return CashInLieu(
        split.symbol, split.effective_at, dust, price, proceeds, fifo_cost, average_cost
    )


def _sell_shares(
    holding: _Holding, quantity: Decimal, proceeds: Decimal, closed: list[Lot] | None = None
) -> tuple[Decimal, Decimal]:
    """Take `quantity` shares out of `holding` for `proceeds`: the oldest lots give them up
    (FIFO), the average basis its running average; the rest of `proceeds` is realized.
    Returns the cost of the shares taken, FIFO and average; the pieces of lots taken are added
    to `closed`, when given."""
    fifo_cost = _consume_lots(holding.lots, quantity, closed)
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


def _consume_lots(lots: Lots, quantity: Decimal, closed: list[Lot] | None = None) -> Decimal:
    """Take `quantity` shares from the oldest lots; return the cost of what was taken. Each
    piece taken (a whole lot as it was, or the part of one: its shares and their part of its
    cost) is added to `closed`, when given."""
    cost = ZERO
    remaining = quantity
    while remaining > 0 and lots:
        lot = lots.oldest()
        if lot.quantity <= remaining:
            cost = _plus(cost, lot.cost)
            remaining = _minus(remaining, lot.quantity)
            lots.take_oldest()
            if closed is not None:
                closed.append(lot)
        else:
            part = lot.cost * remaining / lot.quantity
            left = Lot(  # not dataclasses.replace: a tenth of the cost, for every partial sell
                lot.symbol,
                _minus(lot.quantity, remaining),
                _minus(lot.cost, part),
                lot.opened_at,
                lot.sequence,
            )
            lots.replace_oldest(left)
            cost = _plus(cost, part)
            if closed is not None:
                closed.append(Lot(lot.symbol, remaining, part, lot.opened_at, lot.sequence))
            remaining = ZERO
    return cost


def _action(trade: Trade) -> str:
    if trade.side is _WITHDRAWAL:
        return f"withdraw {present_money(trade.amount)}"
    if trade.side.trades_shares:
        return f"{trade.side.value} {present_quantity(trade.quantity)} {trade.symbol}"
    return f"record a {trade.side.value} of {present_money(trade.amount)}"


def _total(values: Iterable[Decimal]) -> Decimal:
    """An exact sum: the same whatever order the holdings come in (a book resumed from its
    stored state holds them in another order than a replay; a 28-digit `sum` rounded
    differently in the last digit)."""
    return functools.reduce(_plus, values, ZERO)


def _copied(holding: _Holding | HoldingState) -> dict[str, Any]:
    """Every field of a holding, its lots copied: `_Holding` and `HoldingState` have the same
    fields, so a field added to one and not the other fails here, not silently."""
    values = {f.name: getattr(holding, f.name) for f in fields(HoldingState)}
    values["lots"] = holding.lots.copy()
    return values
