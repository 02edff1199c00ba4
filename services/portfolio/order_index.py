"""The open orders the market leader watches, by symbol and trigger price, so that a tick finds
the orders it crosses without looking at the others.

Per symbol there are two ladders, each a list of (level, order id) kept sorted:

* `above`: orders that fire at a price >= level (limit sells, stop buys). A tick at `p`
  crosses the prefix of levels <= p.
* `below`: orders that fire at a price <= level (limit buys, stop sells). A tick at `p`
  crosses the suffix of levels >= p.

Finding what a tick crosses is a bisection plus the crossed entries themselves: O(log n + k),
whatever the number of orders that stay untouched. Adding and removing one order is a bisection
and a list insert or delete (a memory move, fast at the sizes a portfolio service holds).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from services.portfolio.orders import Order

# Sorts after every order id (UUID text): (level, _LAST) is past every entry at that level.
_LAST = "\uffff"


@dataclass
class _Ladders:
    above: list[tuple[Decimal, str]] = field(default_factory=list)
    below: list[tuple[Decimal, str]] = field(default_factory=list)


class OrderIndex:
    def __init__(self, orders: Iterable[Order] = ()) -> None:
        self._orders: dict[str, Order] = {}
        self._symbols: dict[str, _Ladders] = {}
        for order in orders:
            self.add(order)

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, order_id: str) -> bool:
        return order_id in self._orders

    def get(self, order_id: str) -> Order | None:
        return self._orders.get(order_id)

    def orders(self) -> list[Order]:
        return list(self._orders.values())

    def add(self, order: Order) -> None:
        """Watch `order` (replacing what was watched under its id)."""
        self.remove(order.id)
        above, level = order.watch
        ladders = self._symbols.setdefault(order.symbol, _Ladders())
        insort(ladders.above if above else ladders.below, (level, order.id))
        self._orders[order.id] = order

    def remove(self, order_id: str) -> Order | None:
        order = self._orders.pop(order_id, None)
        if order is None:
            return None
        above, level = order.watch
        ladders = self._symbols[order.symbol]
        ladder = ladders.above if above else ladders.below
        at = bisect_left(ladder, (level, order_id))
        if at < len(ladder) and ladder[at][1] == order_id:
            del ladder[at]
        if not ladders.above and not ladders.below:
            del self._symbols[order.symbol]
        return order

    def take_crossed(self, symbol: str, price: Decimal) -> list[Order]:
        """The orders a tick of `symbol` at `price` crosses, removed from the index (the caller
        puts back any that are to wait on), oldest level first."""
        ladders = self._symbols.get(symbol)
        if ladders is None:
            return []
        end = bisect_right(ladders.above, (price, _LAST))
        start = bisect_left(ladders.below, (price, ""))
        if end == 0 and start == len(ladders.below):
            return []  # the usual tick: nothing crossed, two bisections and done
        ids = [i for _, i in ladders.above[:end]] + [i for _, i in ladders.below[start:]]
        del ladders.above[:end]
        del ladders.below[start:]
        if not ladders.above and not ladders.below:
            del self._symbols[symbol]
        return [self._orders.pop(i) for i in ids]
