"""How a portfolio performed: daily value series, time- and money-weighted returns, allocation.

Pure functions over plain data (trades, a price history, dates); no I/O, no clock.

Conventions, stated once
------------------------
* Days are UTC calendar days. A day's value is cash plus the shares held at that day's close,
  priced at the most recent observation: the last known close on or before the day (carried
  forward over weekends and gaps), or the symbol's own last trade price when that is more recent
  or no close is known yet.
* External flows are deposits, withdrawals and the shortfalls funded for recorded buys
  (`domain.CashFlow`). Dividends, fees and trades are not flows: they are performance.
* Inflows count at the START of their day (the money works that day), outflows at its END (it
  worked until it left). The daily sub-period return is therefore
  r_t = (V_t + out_t) / (V_{t-1} + in_t) - 1, and the time-weighted return chains them:
  TWR = prod(1 + r_t) - 1. A day that starts with nothing invested (V_{t-1} + in_t <= 0) has no
  return to measure and is skipped; with no such day at all, the TWR is undefined (None).
* Returns are fractions (0.1 is 10%). The TWR covers the range and is not annualized; the
  money-weighted return (XIRR) is annual, on an Actual/365 day count as spreadsheet XIRR is.
* A range's baseline is the close of `range_start(...)`: its trades belong to the baseline,
  and the series' first point is that baseline.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from decimal import ROUND_DOWN, Decimal
from itertools import pairwise

from services.portfolio.domain import (
    ONE,
    RATIO_PLACES,
    ZERO,
    Book,
    CashPolicy,
    CostMethod,
    Event,
    Split,
    Trade,
    order_key,
)
from services.runtime.errors import InvalidArgument

PriceHistory = Mapping[str, Mapping[date, Decimal]]
DatedAmount = tuple[date, Decimal]

DAYS_PER_YEAR = 365
RANGES = ("1m", "3m", "6m", "1y", "ytd", "all")
DEFAULT_RANGE = "all"
CASH = "cash"  # lower case: it cannot collide with a (normalized, upper-case) symbol


# --- value series ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValuePoint:
    """The portfolio at the close of `day`, and the external money that crossed it that day."""

    day: date
    value: Decimal
    cash: Decimal
    inflow: Decimal  # deposits and funded shortfalls, counted at the start of the day
    outflow: Decimal  # withdrawals (positive), counted at the end of the day


@dataclass(frozen=True)
class _Close:
    """One day's close, for the series and for what a report needs at its ends. `book` is the
    live replay, shared by every close: read it before asking for the next one."""

    point: ValuePoint
    book: Book
    prices: dict[str, Decimal]


class _PriceCursor:
    """The last known close of one symbol, for days asked in increasing order."""

    def __init__(self, closes: Mapping[date, Decimal]) -> None:
        self._closes = sorted(closes.items())
        self._next = 0
        self.last: tuple[date, Decimal] | None = None

    def at(self, day: date) -> tuple[date, Decimal] | None:
        while self._next < len(self._closes) and self._closes[self._next][0] <= day:
            self.last = self._closes[self._next]
            self._next += 1
        return self.last


def _closes(
    trades: Iterable[Trade],
    history: PriceHistory,
    *,
    start: date,
    end: date,
    splits: Iterable[Split],
    policy: CashPolicy,
) -> Iterator[_Close]:
    events: list[Event] = sorted([*trades, *splits], key=order_key)
    book = Book(policy)
    cursors = {symbol: _PriceCursor(closes) for symbol, closes in history.items()}
    pending = 0
    day = start
    while day <= end:
        flows_before = len(book.flows)
        while pending < len(events) and events[pending].day <= day:
            book.record(events[pending])
            pending += 1
        new_flows = book.flows[flows_before:] if day > start else ()
        prices = {symbol: _price_on(book, symbol, day, cursors) for symbol in book.open_symbols()}
        point = ValuePoint(
            day=day,
            value=book.cash + sum((book.quantity(s) * p for s, p in prices.items()), ZERO),
            cash=book.cash,
            inflow=sum((f.amount for f in new_flows if f.amount > 0), ZERO),
            outflow=-sum((f.amount for f in new_flows if f.amount < 0), ZERO),
        )
        yield _Close(point, book, prices)
        day += timedelta(days=1)


def _price_on(book: Book, symbol: str, day: date, cursors: dict[str, _PriceCursor]) -> Decimal:
    cursor = cursors.get(symbol)
    close = cursor.at(day) if cursor else None
    traded = book.last_trade_price(symbol)
    if traded is not None and (close is None or traded[0].astimezone(UTC).date() > close[0]):
        return traded[1]
    return close[1] if close is not None else ZERO


def value_series(
    trades: Iterable[Trade],
    history: PriceHistory,
    *,
    start: date,
    end: date,
    splits: Iterable[Split] = (),
    policy: CashPolicy = CashPolicy.FUND_SHORTFALL,
) -> list[ValuePoint]:
    """One point per day from `start` (the baseline: its flows are not reported) to `end`."""
    return [
        c.point
        for c in _closes(trades, history, start=start, end=end, splits=splits, policy=policy)
    ]


# --- time-weighted return ----------------------------------------------------------------------


def sub_period_return(
    previous_value: Decimal, value: Decimal, inflow: Decimal, outflow: Decimal
) -> Decimal | None:
    """r = (V_t + out_t) / (V_{t-1} + in_t) - 1, or None when nothing was invested."""
    base = previous_value + inflow
    if base <= 0:
        return None
    return (value + outflow) / base - ONE


def time_weighted_return(points: Sequence[ValuePoint]) -> Decimal | None:
    """Daily sub-period returns chained over `points`; points[0] is the baseline."""
    growth = ONE
    measured = False
    for previous, point in pairwise(points):
        r = sub_period_return(previous.value, point.value, point.inflow, point.outflow)
        if r is not None:
            growth *= ONE + r
            measured = True
    return growth - ONE if measured else None


# --- money-weighted return (XIRR) --------------------------------------------------------------


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

    # Every root the grid brackets, each bisected: the one nearest 0 is the answer.
    roots: list[tuple[float, tuple[float, float]]] = []
    more = 0
    for bracket in _brackets(years, amounts):
        root, spent = _bisect(bracket, years, amounts)
        more += spent
        if root is not None:
            roots.append((root, bracket))
    nearest = min(roots, key=lambda found: abs(found[0]), default=None)
    rate, iterations = _newton(years, amounts, guess, tolerance, max_iterations)
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
            terms = [(t, a * math.exp(-t * growth)) for t, a in zip(years, amounts, strict=True)]
        except (OverflowError, ValueError):
            return None, iteration
        value = math.fsum(term for _, term in terms)
        slope = math.fsum(-t * term for t, term in terms) / (1 + rate)
        if slope == 0 or not math.isfinite(value) or not math.isfinite(slope):
            return None, iteration
        step = value / slope
        rate -= step
        if rate <= -1 or not math.isfinite(rate):
            return None, iteration
        if abs(step) <= tolerance * max(1.0, abs(rate)):
            return rate, iteration
    return None, limit


def _sign(x: float, years: list[float], amounts: list[float], *, slope: bool = False) -> int:
    """The sign of the NPV at r = e^x - 1 (or of its slope in x), scaled so no term
    overflows."""
    exponents = [-t * x for t in years]
    top = max(exponents)
    total = math.fsum(
        (-t * a if slope else a) * math.exp(e - top)
        for t, e, a in zip(years, exponents, amounts, strict=True)
    )
    return (total > 0) - (total < 0)


def _bisect(
    bracket: tuple[float, float],
    years: list[float],
    amounts: list[float],
    *,
    slope: bool = False,
) -> tuple[float | None, int]:
    """The root of the NPV (or of its slope) in `bracket` (in x), as a rate (as x for a slope)."""
    low, high = bracket
    low_sign = _sign(low, years, amounts, slope=slope)
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
        sign = _sign(middle, years, amounts, slope=slope)
        if sign == 0:
            return answer(middle), iterations
        if sign == low_sign:
            low = middle
        else:
            high = middle
    return answer((low + high) / 2), iterations


# A grid in x = ln(1 + r), spreading geometrically from r = 0 to x = -36 (r = -1 + 2e-16, as
# near -100% as a float gets) and x = 51.2 (r about 1.7e22).
_STEPS = [0.05 * 2**k for k in range(11)]
_GRID = [-36.0, *(-s for s in reversed(_STEPS[:-1])), 0.0, *_STEPS]


def _brackets(years: list[float], amounts: list[float]) -> list[tuple[float, float]]:
    """Intervals in x that each hold one root of the NPV: where its sign changes between grid
    points, and, where it does not but its slope does, on each side of the extremum between
    them when the NPV there has the other sign (two close roots)."""
    signs = [_sign(x, years, amounts) for x in _GRID]
    slopes = [_sign(x, years, amounts, slope=True) for x in _GRID]
    found: list[tuple[float, float]] = []
    for index, (low, high) in enumerate(pairwise(_GRID)):
        s1, s2 = signs[index], signs[index + 1]
        if s1 == 0:
            found.append((low, low))
        elif s1 != s2:
            found.append((low, high))
        elif slopes[index] != slopes[index + 1] and s2 != 0:
            turn, _ = _bisect((low, high), years, amounts, slope=True)
            assert turn is not None
            if _sign(turn, years, amounts) not in (s1, 0):
                found += [(low, turn), (turn, high)]
    if signs[-1] == 0:
        found.append((_GRID[-1], _GRID[-1]))
    return found


def _inside(rate: float, bracket: tuple[float, float]) -> bool:
    x = math.log1p(rate)
    low, high = bracket
    return low - 1e-12 <= x <= high + 1e-12


def money_weighted_flows(points: Sequence[ValuePoint]) -> list[DatedAmount]:
    """The investor's flows over a series: the baseline value as if put in at the start,
    inflows negative, outflows positive, and the final value as if taken out at the end."""
    if not points:
        return []
    flows: list[DatedAmount] = [(points[0].day, -points[0].value)]
    flows += [(p.day, p.outflow - p.inflow) for p in points[1:] if p.inflow or p.outflow]
    flows.append((points[-1].day, points[-1].value))
    return flows


def money_weighted_return(points: Sequence[ValuePoint]) -> XirrResult:
    return xirr(money_weighted_flows(points))


# --- allocation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllocationSlice:
    name: str  # a symbol, or CASH
    value: Decimal
    weight: Decimal
    is_cash: bool = False


def allocation(
    market_values: Mapping[str, Decimal], cash: Decimal, *, places: int | None = RATIO_PLACES
) -> list[AllocationSlice]:
    """Each symbol's share of the total value, biggest first, then cash (always listed).

    Weights sum to exactly 1: rounded to `places` by the largest-remainder method (None keeps
    full precision). Empty when the portfolio is worth nothing.
    """
    if cash < 0 or any(v < 0 for v in market_values.values()):
        raise ValueError("allocation needs non-negative values")
    held = sorted(((s, v) for s, v in market_values.items() if v > 0), key=lambda i: (-i[1], i[0]))
    named = [*held, (CASH, cash)]
    total = sum((v for _, v in named), ZERO)
    if total <= 0:
        return []
    weights = [v / total for _, v in named]
    if places is not None:
        weights = _largest_remainder(weights, places)
    return [
        AllocationSlice(name, value, weight, is_cash=name == CASH and i == len(named) - 1)
        for i, ((name, value), weight) in enumerate(zip(named, weights, strict=True))
    ]


def _largest_remainder(weights: list[Decimal], places: int) -> list[Decimal]:
    unit = Decimal(1).scaleb(-places)
    floors = [w.quantize(unit, rounding=ROUND_DOWN) for w in weights]
    missing = int((ONE - sum(floors, ZERO)) / unit)
    by_remainder = sorted(range(len(weights)), key=lambda i: weights[i] - floors[i], reverse=True)
    for i in by_remainder[:missing]:
        floors[i] += unit
    return floors


# --- ranges ------------------------------------------------------------------------------------


def range_start(range_: str, today: date, *, inception: date | None = None) -> date:
    """The baseline day of a range: the close whose value the range's return starts from.

    1m/3m/6m/1y: the same day that many months earlier (clamped to the month's end); ytd: the
    last day of the previous year; all (also ""): the day before `inception` (the first trade),
    so the first day's return counts. Never earlier than the day before inception, never
    later than today.
    """
    key = (range_ or DEFAULT_RANGE).strip().lower()
    months = {"1m": 1, "3m": 3, "6m": 6, "1y": 12}
    if key in months:
        start = _months_before(today, months[key])
    elif key == "ytd":
        start = date(today.year - 1, 12, 31)
    elif key == "all":
        start = today if inception is None else inception - timedelta(days=1)
    else:
        raise InvalidArgument.field("range", f"must be one of {', '.join(RANGES)}")
    if inception is not None:
        start = max(start, inception - timedelta(days=1))
    return min(start, today)


def _months_before(day: date, months: int) -> date:
    years, month_index = divmod(day.month - 1 - months, 12)
    year, month = day.year + years, month_index + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


# --- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerformanceReport:
    """A range's performance. Flow-like figures (realized gain, dividends, fees) count what
    happened after the baseline; `unrealized_gain` and `allocation` describe the end.
    `gain` reconciles the values: end_value - start_value - (inflows - outflows)."""

    range: str
    start: date
    end: date
    start_value: Decimal
    end_value: Decimal
    inflows: Decimal
    outflows: Decimal
    gain: Decimal
    time_weighted_return: Decimal | None
    money_weighted_return: XirrResult
    realized_gain: Decimal
    unrealized_gain: Decimal
    dividends: Decimal
    fees: Decimal
    allocation: list[AllocationSlice]
    series: list[ValuePoint]


def performance_report(
    trades: Iterable[Trade],
    history: PriceHistory,
    *,
    range_: str,
    today: date,
    splits: Iterable[Split] = (),
    policy: CashPolicy = CashPolicy.FUND_SHORTFALL,
    method: CostMethod = CostMethod.FIFO,
) -> PerformanceReport:
    """Everything GetPerformance answers, for trades up to the close of `today`."""
    trades = list(trades)
    inception = min((t.day for t in trades), default=None)
    start = range_start(range_, today, inception=inception)
    series: list[ValuePoint] = []
    opening = (ZERO, ZERO, ZERO)
    last: _Close | None = None
    for close in _closes(trades, history, start=start, end=today, splits=splits, policy=policy):
        if not series:
            opening = (close.book.realized_gain(method), close.book.dividends, close.book.fees)
        series.append(close.point)
        last = close
    assert last is not None  # start <= today, so there is at least the baseline
    totals = last.book.totals(last.prices, method=method)
    market_values = {s: last.book.quantity(s) * p for s, p in last.prices.items()}
    inflows = sum((p.inflow for p in series[1:]), ZERO)
    outflows = sum((p.outflow for p in series[1:]), ZERO)
    return PerformanceReport(
        range=(range_ or DEFAULT_RANGE).strip().lower(),
        start=start,
        end=today,
        start_value=series[0].value,
        end_value=series[-1].value,
        inflows=inflows,
        outflows=outflows,
        gain=series[-1].value - series[0].value - (inflows - outflows),
        time_weighted_return=time_weighted_return(series),
        money_weighted_return=money_weighted_return(series),
        realized_gain=totals.realized_gain - opening[0],
        unrealized_gain=totals.unrealized_gain,
        dividends=totals.dividends - opening[1],
        fees=totals.fees - opening[2],
        allocation=allocation(market_values, totals.cash),
        series=series,
    )
