"""Numbers as the wire carries them: decimal strings parsed within bounds, presented rounded.

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
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Context, Decimal

from services.runtime.errors import InvalidArgument

ZERO = Decimal(0)
ONE = Decimal(1)

QUANTITY_PLACES = 8
PRICE_PLACES = 6
MONEY_PLACES = 2
RATIO_PLACES = 6
PERCENT_PLACES = 2
MAX_INTEGER_DIGITS = 12
# The longest decimal string read at all (digits, sign and point).
MAX_INPUT_LENGTH = 64

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_NOT_FINITE = {"nan", "snan", "inf", "infinity"}


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


def rounded(value: Decimal, places: int, *, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    # A context as precise as the value needs: a huge figure (a 15 % gain in a day, annualized,
    # is about 1e22) has more digits than the default 28 and must still be stated, not raise.
    precision = max(28, value.adjusted() + places + 2)
    result = value.quantize(
        Decimal(1).scaleb(-places), rounding=rounding, context=Context(prec=precision)
    )
    return abs(result) if result == 0 else result  # never "-0.00"


def present_money(value: Decimal) -> str:
    """Money for the wire: 2 places, half-even ("1234.50")."""
    return format(rounded(value, MONEY_PLACES), "f")


def present_sum(*terms: Decimal, present: Callable[[Decimal], str] = present_money) -> str:
    """A figure that is the sum of others shown beside it (a gain: value less cost; alpha:
    a return less the benchmark's), as the sum of their presented amounts: each rounded on its
    own, the three would not add up on screen (18.95 - 10.00 shown as a gain of 8.94, for a
    cost of 10.005)."""
    # Half-even rounding is symmetric: a term's negation rounds to the negation of its figure.
    return present(sum((Decimal(present(t)) for t in terms), Decimal(0)))


def present_quantity(value: Decimal) -> str:
    """A quantity for the wire: at most 8 places, no trailing zeros ("10", "0.5")."""
    return format(rounded(value, QUANTITY_PLACES).normalize(), "f")


def present_price(value: Decimal) -> str:
    """A price for the wire: at most 6 places, at least 2 ("187.40", "0.000123")."""
    price = rounded(value, PRICE_PLACES).normalize()
    exponent = price.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -MONEY_PLACES:
        price = rounded(price, MONEY_PLACES)
    return format(price, "f")


def present_ratio(value: Decimal | None) -> str:
    """A fraction (weight, return; 0.1 is 10%) for the wire: 6 places; undefined is ""."""
    return "" if value is None else format(rounded(value, RATIO_PLACES), "f")


def present_percent(value: Decimal | None) -> str:
    """A fraction shown as a percent for the wire: 0.12345 -> "12.35"; undefined is ""."""
    return "" if value is None else format(rounded(value * 100, PERCENT_PLACES), "f")


def ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    """numerator / denominator, or None when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else None
