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

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from services.portfolio.book_values import (
    BookFigures,
    BookState,
    CashFlow,
    CashInLieu,
    CashPolicy,
    CostMethod,
    Event,
    HistoryMissing,
    HoldingState,
    InsufficientCash,
    InsufficientShares,
    Position,
    Sale,
    Totals,
    TradedSymbols,
    market_value,
    order_key,
    price_of,
)
from services.portfolio.exact import minus as _minus
from services.portfolio.exact import plus as _plus
from services.portfolio.exact import total as _total
from services.portfolio.holdings import (
    LiveHolding,
    apply_to_holding,
    holding_fields,
    pay_cash_in_lieu,
)
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
from services.runtime.errors import NotFound

# The sides by module name: a member named on its class costs a descriptor call (Python 3.11),
# and every trade replayed asks several.
_SELL, _DIVIDEND = Side.SELL, Side.DIVIDEND
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
        self._holdings: dict[str, LiveHolding] = {}
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
            book._holdings[h.symbol] = LiveHolding(**holding_fields(h))
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
                HoldingState(**holding_fields(h))
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

    def held_since(self, moment: datetime) -> list[str]:
        """Symbols held now, or bought or sold at or after `moment`, sorted (`TradedSymbols`)."""
        return self.traded_symbols().since(moment)

    def traded_symbols(self) -> TradedSymbols:
        return TradedSymbols.of(self._holdings.values())

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
        return market_value(self._holdings.values(), prices)

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
        return self.figures(method).totals(prices)

    def figures(self, method: CostMethod = CostMethod.FIFO) -> BookFigures:
        """What `totals` reads of the book (`BookFigures.of_state` gives the same of its state)."""
        return BookFigures.of(
            self._holdings.values(),
            cash=self._cash,
            dividends=self._dividends,
            fees=self._fees,
            deposits=self.deposits,
            withdrawals=self.withdrawals,
            funded=self.funded,
            method=method,
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
                holding = LiveHolding(trade.symbol, Lots(trade.symbol))
                self._holdings[trade.symbol] = holding
            apply_to_holding(holding, trade, self._sales)
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
        lieu = pay_cash_in_lieu(holding, dust, split, closed) if dust else None
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

    def _position(
        self,
        holding: LiveHolding,
        price: Decimal | None,
        method: CostMethod,
        total_value: Decimal | None,
        *,
        lots: bool = True,
    ) -> Position:
        if price is None:
            price = price_of(holding, {})
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


def _action(trade: Trade) -> str:
    if trade.side is _WITHDRAWAL:
        return f"withdraw {present_money(trade.amount)}"
    if trade.side.trades_shares:
        return f"{trade.side.value} {present_quantity(trade.quantity)} {trade.symbol}"
    return f"record a {trade.side.value} of {present_money(trade.amount)}"
