"""Sums, differences and products that keep every digit, for the book's lots and bases.

The default decimal context keeps 28 significant digits, too few for a cost of 1e7 less a part
of a cent's cost (1e-30), and a rounded difference would let the basis and the cost taken out of
it disagree.

Each operation is done in one context of the greatest precision decimal allows. A sum,
difference or product is exact whenever the precision holds all its digits, and the result of
an exact operation does not depend on the precision (its exponent is the ideal one), so every
answer is the one a context of just enough digits gives. The precision costs nothing here:
libmpdec sizes a result by its operands, not by the context (only an inexact operation, such as
a division, would compute to the full precision, and none is done in this context). One shared
context, rather than one sized per operation or a 28-digit attempt that signals any rounding,
matters: a sell's average cost has 28 digits, so about two of every three of the book's sums
needed the wider one, and working out its size cost ten times the operation.

The exponent range is the default one, and only an overflow raises: a result outside that range
raises, and a NaN or an infinity passes through, as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from decimal import MAX_PREC, Context, Decimal, Overflow

_EXACT = Context(prec=MAX_PREC, traps=[Overflow])

# The context's own methods, not functions around them: the book calls these for every trade,
# and a Python call around each cost as much as the operation.
plus: Callable[[Decimal, Decimal], Decimal] = _EXACT.add
minus: Callable[[Decimal, Decimal], Decimal] = _EXACT.subtract
times: Callable[[Decimal, Decimal], Decimal] = _EXACT.multiply

_ZERO = Decimal(0)


def total(values: Iterable[Decimal]) -> Decimal:
    """An exact sum: the same whatever order the values come in (a book resumed from its
    stored state holds its holdings in another order than a replay; a 28-digit `sum` rounded
    differently in the last digit)."""
    return functools.reduce(plus, values, _ZERO)
