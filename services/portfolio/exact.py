"""Sums, differences and products that keep every digit, for the book's lots and bases.

The default decimal context keeps 28 significant digits, too few for a cost of 1e7 less a part
of a cent's cost (1e-30), and a rounded difference would let the basis and the cost taken out of
it disagree.

Most operands fit in 28 digits: each operation is tried in a 28-digit context that signals any
rounding, and only an operation that would have been rounded is done again in a context wide
enough for every digit (counting digits costs more than the operation).
"""

from __future__ import annotations

from decimal import Context, Decimal, Rounded

_TRIED = Context(prec=28, traps=[Rounded])


def plus(a: Decimal, b: Decimal) -> Decimal:
    try:
        return _TRIED.add(a, b)
    except Rounded:
        return _exact_context(a, b).add(a, b)


def minus(a: Decimal, b: Decimal) -> Decimal:
    try:
        return _TRIED.subtract(a, b)
    except Rounded:
        return _exact_context(a, b).subtract(a, b)


def times(a: Decimal, b: Decimal) -> Decimal:
    try:
        return _TRIED.multiply(a, b)
    except Rounded:
        digits = len(a.as_tuple().digits) + len(b.as_tuple().digits)
        return Context(prec=max(28, digits)).multiply(a, b)


def _exact_context(a: Decimal, b: Decimal) -> Context:
    lowest = min(_exponent(a), _exponent(b))
    highest = max(a.adjusted(), b.adjusted()) + 1  # a carry adds a digit
    return Context(prec=max(28, highest - lowest + 1))


def _exponent(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return exponent if isinstance(exponent, int) else 0
