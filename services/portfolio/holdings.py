"""One symbol's holding as the book works on it: bought into lots, sold from the oldest lots
(FIFO) and at the running average, a split's dust paid in cash (the rules: book.py)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.portfolio.book_values import CashInLieu, CostMethod, HoldingState, Sale
from services.portfolio.exact import minus as _minus
from services.portfolio.exact import plus as _plus
from services.portfolio.exact import times as _times
from services.portfolio.lots import Lot, Lots
from services.portfolio.trading import Side, Split, Trade
from services.portfolio.wire_numbers import ZERO

# The sides by module name: a member named on its class costs a descriptor call (Python 3.11),
# and every trade replayed asks.
_BUY, _DIVIDEND = Side.BUY, Side.DIVIDEND


@dataclass
class LiveHolding:
    """One symbol's holding as the book changes it (`HoldingState` is its frozen copy)."""

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


def apply_to_holding(holding: LiveHolding, trade: Trade, sales: list[Sale] | None) -> None:
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
        sell_shares(holding, trade.quantity, proceeds)
        return
    closed: list[Lot] = []
    _, average_cost = sell_shares(holding, trade.quantity, proceeds, closed)
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


def pay_cash_in_lieu(
    holding: LiveHolding, dust: Decimal, split: Split, closed: list[Lot] | None = None
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
    fifo_cost, average_cost = sell_shares(holding, dust, proceeds, closed)
    return CashInLieu(
        split.symbol, split.effective_at, dust, price, proceeds, fifo_cost, average_cost
    )


def sell_shares(
    holding: LiveHolding, quantity: Decimal, proceeds: Decimal, closed: list[Lot] | None = None
) -> tuple[Decimal, Decimal]:
    """Take `quantity` shares out of `holding` for `proceeds`: the oldest lots give them up
    (FIFO), the average basis its running average; the rest of `proceeds` is realized.
    Returns the cost of the shares taken, FIFO and average; the pieces of lots taken are added
    to `closed`, when given."""
    fifo_cost = consume_lots(holding.lots, quantity, closed)
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


def consume_lots(lots: Lots, quantity: Decimal, closed: list[Lot] | None = None) -> Decimal:
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


def holding_fields(holding: LiveHolding | HoldingState) -> dict[str, Any]:
    """Every field of a holding, its lots copied: `LiveHolding` and `HoldingState` have the same
    fields, so a field added to one and not the other fails here, not silently."""
    values = {f.name: getattr(holding, f.name) for f in fields(HoldingState)}
    values["lots"] = holding.lots.copy()
    return values
