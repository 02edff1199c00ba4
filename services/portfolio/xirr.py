"""The money-weighted return's solver: XIRR, the annual rate that sets dated flows' net
present value to zero (Actual/365, as spreadsheet XIRR), or a plain "no answer" with the reason.

Pure functions over plain data; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from itertools import pairwise, repeat
from operator import mul, neg, sub

from services.portfolio.wire_numbers import ONE, ZERO

DatedAmount = tuple[date, Decimal]

DAYS_PER_YEAR = 365


@dataclass(frozen=True)
class XirrResult:
    """An annual rate that sets the flows' net present value to zero, when one was found.

    `converged` False means `rate` is None and `reason` says why (no sign change among the
    flows, or no root found); a result is never a number the solver did not stand behind.
    """

    rate: Decimal | None
    converged: bool
    reason: str
    method: str  # "newton", "bisection", or "" when no root was found
    iterations: int


def xnpv(rate: Decimal, flows: Sequence[DatedAmount]) -> Decimal:
    """Net present value at `rate`, discounting to the first flow's day, Actual/365, in
    Decimal: sum(amount / (1 + rate) ** (days / 365))."""
    if not flows:
        return ZERO
    if rate <= -1:
        raise ValueError("rate must be greater than -1")
    first = min(day for day, _ in flows)
    base = ONE + rate
    return sum(
        (amount / base ** (Decimal((day - first).days) / DAYS_PER_YEAR) for day, amount in flows),
        ZERO,
    )


def xirr(
    flows: Sequence[DatedAmount],
    *,
    guess: float = 0.1,
    tolerance: float = 1e-10,
    max_iterations: int = 100,
) -> XirrResult:
    """The annual rate r with sum(amount / (1 + r) ** (days / 365)) = 0.

    Investor's perspective: money put in is negative, money taken out (and the final value) is
    positive. When several rates do that, the one nearest 0 is given (as spreadsheets and pyxirr
    tend to): every sign change of the NPV is found on a grid in x = ln(1 + r), two close roots
    between grid points included (they straddle an extremum, found where the slope changes
    sign); Newton's method from `guess` answers when it lands in the nearest one's bracket, and
    bisection on x otherwise. The root is found in binary floating point: a rate is not money,
    and a tolerance of 1e-10 is far coarser than float's error; the amounts themselves stay
    Decimal until this point.
    """
    by_day: dict[date, Decimal] = {}
    for day, amount in flows:
        by_day[day] = by_day.get(day, ZERO) + amount
    dated = sorted((d, a) for d, a in by_day.items() if a != 0)
    if not any(a < 0 for _, a in dated) or not any(a > 0 for _, a in dated):
        return XirrResult(
            None,
            False,
            "no sign change: XIRR needs money both put in and taken out on different days",
            "",
            0,
        )
    first = dated[0][0]
    years = [(d - first).days / DAYS_PER_YEAR for d, _ in dated]
    amounts = [float(a) for _, a in dated]

    def stated(rate: float | None) -> Decimal | None:
        """The rate as stated - 12 significant digits, or every digit of the float when 12 are
        not enough (a rate a hair above -100 %) - if the NPV there is still about zero next to
        the size of its discounted terms."""
        if rate is None:
            return None
        for digits in (12, 17):
            decimal_rate = Decimal(format(rate, f".{digits}g"))
            if decimal_rate <= -1:
                continue
            if _relative_npv(float(decimal_rate), years, amounts) <= 1e-9:
                return decimal_rate
            if digits == 17 and _straddles(float(decimal_rate), years, amounts):
                return decimal_rate  # the root, to the last digit a float holds
        return None

    brackets = _brackets(years, amounts)
    rate, iterations = _newton(years, amounts, guess, tolerance, max_iterations)
    # A lone bracket holds the nearest root: Newton landing in it answers, and bisecting that
    # root (most of the solver's work) would be for nothing.
    lone = len(brackets) == 1 and rate is not None and _inside(rate, brackets[0])
    if lone and (found := stated(rate)) is not None:
        return XirrResult(found, True, "", "newton", iterations)
    # Every root the grid brackets, each bisected: the one nearest 0 is the answer.
    roots: list[tuple[float, tuple[float, float]]] = []
    more = 0
    for bracket in brackets:
        root, spent = _bisect(bracket, years, amounts)
        more += spent
        if root is not None:
            roots.append((root, bracket))
    nearest = min(roots, key=lambda found: abs(found[0]), default=None)
    newton_answers = rate is not None and (nearest is None or _inside(rate, nearest[1]))
    if newton_answers and (found := stated(rate)) is not None:
        return XirrResult(found, True, "", "newton", iterations)
    root = None if nearest is None else nearest[0]
    if (found := stated(root)) is not None:
        return XirrResult(found, True, "", "bisection", iterations + more)
    if root is not None or (dated[0][1] > 0) != (dated[-1][1] > 0):
        # A root exists (the NPV's sign at r -> -1 is the last flow's, at r -> inf the first's)
        # but no rate near it can be stated: an annualized rate beyond what a float holds.
        reason = "the annualized rate is too extreme to state: a large gain or loss over days"
    else:
        reason = "no rate sets the net present value to zero"
    return XirrResult(None, False, reason, "", iterations + more)


def _npv(rate: float, years: list[float], amounts: list[float]) -> float:
    growth = math.log1p(rate)
    try:
        return math.fsum(a * math.exp(-t * growth) for t, a in zip(years, amounts, strict=True))
    except OverflowError:
        return math.inf


def _relative_npv(rate: float, years: list[float], amounts: list[float]) -> float:
    """|NPV| / sum(|discounted amount|) at `rate`, scaled so no term overflows: how far from a
    root the rate is, whatever the size of the discount factors there."""
    x = math.log1p(rate)
    exponents = [-t * x for t in years]
    top = max(exponents)
    terms = [a * math.exp(e - top) for e, a in zip(exponents, amounts, strict=True)]
    size = math.fsum(abs(term) for term in terms)
    return abs(math.fsum(terms)) / size if size else math.inf


def _straddles(rate: float, years: list[float], amounts: list[float]) -> bool:
    """Whether the NPV changes sign within a few float steps of `rate`: near -100 % a float's
    last digit moves 1 + r by parts per million, and no nearer rate can be written."""
    below, above = rate, rate
    for _ in range(4):
        below, above = math.nextafter(below, -1.0), math.nextafter(above, math.inf)
    if below <= -1:
        return False
    signs = {_sign(math.log1p(r), years, amounts) for r in (below, above)}
    return signs == {-1, 1} or 0 in signs


def _newton(
    years: list[float], amounts: list[float], guess: float, tolerance: float, limit: int
) -> tuple[float | None, int]:
    rate = guess
    for iteration in range(1, limit + 1):
        try:
            growth = math.log1p(rate)
            # In C loops (map): a * e^(-t * growth), -t * x being (-t) * x.
            discount = map(math.exp, map(mul, map(neg, years), repeat(growth)))
            terms = list(map(mul, amounts, discount))
        except (OverflowError, ValueError):
            return None, iteration
        value = math.fsum(terms)
        slope = math.fsum(map(mul, map(neg, years), terms)) / (1 + rate)
        if slope == 0 or not math.isfinite(value) or not math.isfinite(slope):
            return None, iteration
        step = value / slope
        rate -= step
        if rate <= -1 or not math.isfinite(rate):
            return None, iteration
        if abs(step) <= tolerance * max(1.0, abs(rate)):
            return rate, iteration
    return None, limit


def _top(x: float, years: list[float]) -> float:
    """max(-t * x for t in years), from its ends: `years` are ascending and non-negative, so
    the greatest is the first term for x >= 0 and the last one otherwise."""
    return -years[-1] * x if x < 0 else -years[0] * x


def _sign(x: float, years: list[float], weights: list[float]) -> int:
    """The sign of sum(weight * e^(-t x)), scaled so no term overflows: the NPV at
    r = e^x - 1 with the amounts as `weights`, its slope in x with `_slope_weights`."""
    total = math.fsum(map(mul, weights, _factors(x, years)))
    return (total > 0) - (total < 0)


def _factors(x: float, years: list[float]) -> Iterator[float]:
    """e^(-t x - top) for each t in `years`, top the greatest -t x; in C loops (map), as the
    solver asks for a few hundred sets of them."""
    top = _top(x, years)
    # -t * x is (-t) * x: negating t first gives the same product.
    return map(math.exp, map(sub, map(mul, map(neg, years), repeat(x)), repeat(top)))


def _slope_weights(years: list[float], amounts: list[float]) -> list[float]:
    return [-t * a for t, a in zip(years, amounts, strict=True)]


def _signs(
    x: float, years: list[float], amounts: list[float], slope_weights: list[float]
) -> tuple[int, int]:
    """`_sign` of the NPV and of its slope at x, from one set of discount factors
    (`slope_weights` from `_slope_weights`: -t * a * f is (-t * a) * f)."""
    factors = list(_factors(x, years))
    total = math.fsum(map(mul, amounts, factors))
    slope = math.fsum(map(mul, slope_weights, factors))
    return (total > 0) - (total < 0), (slope > 0) - (slope < 0)


def _bisect(
    bracket: tuple[float, float],
    years: list[float],
    amounts: list[float],
    *,
    slope: bool = False,
) -> tuple[float | None, int]:
    """The root of the NPV (or of its slope) in `bracket` (in x), as a rate (as x for a slope)."""
    low, high = bracket
    weights = _slope_weights(years, amounts) if slope else amounts
    low_sign = _sign(low, years, weights)
    answer = (lambda x: x) if slope else math.expm1
    if low_sign == 0:
        return answer(low), 0
    iterations = 0
    # To the last bit of x: a stated rate then matches Newton's to every digit it states.
    while iterations < 200:
        middle = (low + high) / 2
        if not low < middle < high:
            break
        iterations += 1
        sign = _sign(middle, years, weights)
        if sign == 0:
            return answer(middle), iterations
        if sign == low_sign:
            low = middle
        else:
            high = middle
    return answer((low + high) / 2), iterations


# A grid in x = ln(1 + r), spreading geometrically from r = 0 to x = -36 (r = -1 + 2e-16, as
# near -100% as a float gets) and x = 700 (r about 1e304, short of a float's overflow): a gain
# of a million times over a few weeks annualizes to about 1e38 (x = 88), which pyxirr states.
_STEPS = [*(0.05 * 2**k for k in range(14)), 700.0]
_GRID = [-36.0, *(-s for s in reversed(_STEPS) if s < 36), 0.0, *_STEPS]


def _brackets(years: list[float], amounts: list[float]) -> list[tuple[float, float]]:
    """Intervals in x that each hold one root of the NPV: where its sign changes between grid
    points, and, where it does not but its slope does, on each side of the extremum between
    them when the NPV there has the other sign (two close roots)."""
    weights = _slope_weights(years, amounts)
    signs, slopes = zip(*(_signs(x, years, amounts, weights) for x in _GRID), strict=True)
    found: list[tuple[float, float]] = []
    for index, (low, high) in enumerate(pairwise(_GRID)):
        s1, s2 = signs[index], signs[index + 1]
        if s1 == 0:
            found.append((low, low))
        elif s1 != s2:
            found.append((low, high))
        elif slopes[index] != slopes[index + 1] and s2 != 0:
            if _keeps_sign((low, high), s1, years, amounts):
                continue  # the extremum has the ends' sign: no need to find it
            turn, _ = _bisect((low, high), years, amounts, slope=True)
            assert turn is not None
            if _sign(turn, years, amounts) not in (s1, 0):
                found += [(low, turn), (turn, high)]
    if signs[-1] == 0:
        found.append((_GRID[-1], _GRID[-1]))
    return found


# How far from zero, next to the size of its terms, a bound on the NPV must be for the sign the
# solver would compute anywhere in the interval to be that bound's: far above the terms' float
# error (parts in 1e12 at the grid's far end, where -t x reaches thousands).
_SURE = 1e-6


def _keeps_sign(
    bracket: tuple[float, float], sign: int, years: list[float], amounts: list[float]
) -> bool:
    """Whether the NPV surely has `sign` all over `bracket` (in x), told from its ends alone.

    The NPV is P(x) - N(x), P the sum of the positive amounts discounted and N that of the
    negative ones (as sizes), and both only fall as x grows (t >= 0), so on [low, high] it lies
    between
    P(high) - N(low) and P(low) - N(high). When the bound on the side of `sign` is that sign by
    a margin (`_SURE`) of P(low) + N(low), the most either sum reaches there, the sign computed
    at any point of the bracket (the extremum `_brackets` would bisect for) is `sign`: the
    bisection could not change the answer. A False is no claim."""
    low, high = bracket
    top = max(_top(low, years), _top(high, years))  # one scale for both ends, no term above 1

    def discounted(weights: list[float], x: float) -> float:
        factors = map(math.exp, map(sub, map(mul, map(neg, years), repeat(x)), repeat(top)))
        return math.fsum(map(mul, weights, factors))

    positive = [a if a > 0 else 0.0 for a in amounts]
    negative = [-a if a < 0 else 0.0 for a in amounts]
    try:
        p_low, p_high = discounted(positive, low), discounted(positive, high)
        n_low, n_high = discounted(negative, low), discounted(negative, high)
    except (OverflowError, ValueError):
        return False
    bound = p_high - n_low if sign > 0 else n_high - p_low
    size = p_low + n_low
    return math.isfinite(bound) and math.isfinite(size) and bound > _SURE * size


def _inside(rate: float, bracket: tuple[float, float]) -> bool:
    x = math.log1p(rate)
    low, high = bracket
    return low - 1e-12 <= x <= high + 1e-12
