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
* The same daily returns give the range's risk figures (maximum drawdown of the chained index,
  volatility, Sharpe and Sortino): risk.py states their conventions.
"""

from __future__ import annotations

import calendar
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from decimal import ROUND_DOWN, Decimal
from itertools import pairwise, repeat
from operator import is_, mul
from typing import NamedTuple, cast

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
from services.portfolio.returns import (
    Attribution,
    Benchmark,
    Breakdown,
    RatesBySymbol,
    benchmark,
    values_at,
)
from services.portfolio.risk import DailyReturn, RiskFigures, risk_figures
from services.portfolio.xirr import DatedAmount, XirrResult, xirr
from services.runtime.errors import InvalidArgument

PriceHistory = Mapping[str, Mapping[date, Decimal]]
RANGES = ("1m", "3m", "6m", "1y", "ytd", "all")
DEFAULT_RANGE = "all"
DEFAULT_CURRENCY = "USD"
CASH = "cash"  # lower case: it cannot collide with a (normalized, upper-case) symbol


# --- value series ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)  # slots: a series holds one for every day
class ValuePoint:
    """The portfolio at the close of `day`, and the external money that crossed it that day."""

    day: date
    value: Decimal
    cash: Decimal
    inflow: Decimal  # deposits and funded shortfalls, counted at the start of the day
    outflow: Decimal  # withdrawals (positive), counted at the end of the day


class _Close(NamedTuple):
    """One day's close, for the series and for what a report needs at its ends. `book` is the
    live replay, shared by every close: read it before asking for the next one. `symbols` are
    the symbols held (sorted), `quantities` and `prices` theirs, in the same order; a day that
    repeats the last (nothing recorded, no close of a symbol held) shares its tuples and its
    value. A tuple rather than a frozen dataclass: one is made for every day of the range."""

    point: ValuePoint
    book: Book
    symbols: tuple[str, ...]
    quantities: tuple[Decimal, ...]
    prices: tuple[Decimal, ...]

    def prices_by_symbol(self) -> dict[str, Decimal]:
        return dict(zip(self.symbols, self.prices, strict=True))


class _LastCloses:
    """The last close of a symbol on or before a day, for the few prices a day's own close
    does not give (a range's first day, a trade on a day without a close)."""

    def __init__(self, history: PriceHistory) -> None:
        self._history = history
        self._days: dict[str, list[date]] = {}  # sorted when first asked

    def on_or_before(self, symbol: str, day: date) -> tuple[date, Decimal] | None:
        closes = self._history.get(symbol)
        if not closes:
            return None
        days = self._days.get(symbol)
        if days is None:
            days = self._days[symbol] = sorted(closes)
        index = bisect_right(days, day)
        return None if index == 0 else (days[index - 1], closes[days[index - 1]])


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
    event_days = [event.day for event in events]  # worked out once, not at every look
    book = Book(policy)
    last_closes = _LastCloses(history)
    held: dict[str, Decimal] = {}  # quantity per open symbol, sorted
    symbols: tuple[str, ...] = ()
    quantities: tuple[Decimal, ...] = ()
    prices: tuple[Decimal, ...] = ()
    priced: tuple[str, ...] = ()  # the symbols of `prices`: the holdings before a trade's day
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    # Each day's closes (None: no close that day) of every symbol a trade names (no other can
    # be held), in a row per day: the closes of the symbols held are then one C call on the
    # day's row (`pick`), not a loop over the holdings.
    named = sorted({e.symbol for e in events if isinstance(e, Trade) and e.symbol})
    position = {symbol: i for i, symbol in enumerate(named)}
    rows = _rows(named, history, days)
    pick = values_at([])
    value: Decimal | None = None
    pending = 0
    for index, day in enumerate(days):
        flows_before = book.flow_count
        touched: set[str] = set()
        while pending < len(events) and event_days[pending] <= day:
            book.record(events[pending])
            touched.add(events[pending].symbol)
            pending += 1
        if value is None or touched:  # the holdings changed: read them again
            if value is None:
                held = {symbol: book.quantity(symbol) for symbol in book.open_symbols()}
            else:
                held = _held_after(book, held, touched)
            if value is None or tuple(held) != symbols:
                symbols = tuple(held)
                pick = values_at([position[symbol] for symbol in symbols])
            quantities = tuple(held.values())
        day_closes = pick(rows[index])
        # Counted by identity: a Decimal compared with None asks numbers.Rational (slow).
        missing = sum(map(is_, day_closes, repeat(None)))
        if not touched and value is not None and missing == len(day_closes):
            # Nothing traded and no new close (a weekend, a holiday): the day repeats the last.
            point = ValuePoint(day, value, book.cash, ZERO, ZERO)
            yield _Close(point, book, symbols, quantities, prices)
            continue
        if missing:
            before = dict(zip(priced, prices, strict=True))
            prices = _fill_prices(book, day, symbols, day_closes, before, touched, last_closes)
        else:
            prices = cast("tuple[Decimal, ...]", day_closes)
        priced = symbols
        # Added up in the holdings' order: a 28-digit sum may end otherwise.
        value = book.cash + sum(map(mul, quantities, prices), ZERO)
        inflow = outflow = ZERO
        if day > start and book.flow_count > flows_before:
            new_flows = book.flows_since(flows_before)
            inflow = sum((f.amount for f in new_flows if f.amount > 0), ZERO)
            outflow = -sum((f.amount for f in new_flows if f.amount < 0), ZERO)
        point = ValuePoint(day, value, book.cash, inflow, outflow)
        yield _Close(point, book, symbols, quantities, prices)


def _rows(
    symbols: list[str], history: PriceHistory, days: list[date]
) -> list[tuple[Decimal | None, ...]]:
    """Per day of `days`, the close of each of `symbols` that day (None: none), in their order:
    looked up once per symbol for the range, in C loops."""
    if not symbols:
        return [()] * len(days)
    columns = [list(map(history.get(symbol, {}).get, days)) for symbol in symbols]
    return list(zip(*columns, strict=True))


def _held_after(book: Book, held: dict[str, Decimal], touched: set[str]) -> dict[str, Decimal]:
    """The quantity per open symbol, sorted as `book.open_symbols()`, after the events of a
    day: only the symbols of those events can have changed (read afresh, not every holding)."""
    quantities = dict(held)
    opened = False
    for symbol in touched:
        quantity = book.quantity(symbol)
        if quantity > 0:
            opened = opened or symbol not in quantities
            quantities[symbol] = quantity
        else:
            quantities.pop(symbol, None)
    return {s: quantities[s] for s in sorted(quantities)} if opened else quantities


def _fill_prices(
    book: Book,
    day: date,
    symbols: tuple[str, ...],
    day_closes: Sequence[Decimal | None],
    before: dict[str, Decimal],
    touched: set[str],
    last_closes: _LastCloses,
) -> tuple[Decimal, ...]:
    """The day's price of each symbol held, where some have no close of the day (`None`): a
    price moves only with a close of the day or a trade of its symbol, so the others carry
    over from the day before (`before`); a symbol traded that day or not held the day before
    takes the more recent of its last close and its last trade price."""
    filled: list[Decimal] = []
    for symbol, price in zip(symbols, day_closes, strict=True):
        if price is None:
            if symbol in before and symbol not in touched:
                price = before[symbol]
            else:
                price = _price_on(book, symbol, last_closes.on_or_before(symbol, day))
        filled.append(price)
    return tuple(filled)


def _price_on(book: Book, symbol: str, close: tuple[date, Decimal] | None) -> Decimal:
    """`symbol`'s price: the more recent of its last close (`close`) and its last trade here
    (split-adjusted already). A close printed before a split the book has applied since is
    taken split (the close of the Friday before a Saturday's 10-for-1 is a tenth of it then)."""
    if close is not None:
        printed = close[1]
        for split in book.splits:
            if split.symbol == symbol and split.day > close[0]:
                printed = split.unscale(printed)
        close = (close[0], printed)
    traded = book.last_trade_price(symbol)
    if traded is None:
        return close[1] if close is not None else ZERO
    if close is None or traded[0].astimezone(UTC).date() > close[0]:
        return traded[1]
    return close[1]


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


def daily_returns(points: Sequence[ValuePoint]) -> list[DailyReturn]:
    """Each day's sub-period return after the baseline points[0] (None: nothing invested)."""
    return [
        (point.day, sub_period_return(previous.value, point.value, point.inflow, point.outflow))
        for previous, point in pairwise(points)
    ]


def time_weighted_return(points: Sequence[ValuePoint]) -> Decimal | None:
    """Daily sub-period returns chained over `points`; points[0] is the baseline."""
    return chained(daily_returns(points))


def chained(returns: Iterable[DailyReturn]) -> Decimal | None:
    """The growth of the returns chained, less one; None when none was measured."""
    growth = ONE
    measured = False
    for _, r in returns:
        if r is not None:
            growth *= ONE + r
            measured = True
    return growth - ONE if measured else None


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
    weights = shares([v for _, v in named], places=places)
    if weights is None:
        return []
    return [
        AllocationSlice(name, value, weight, is_cash=name == CASH and i == len(named) - 1)
        for i, ((name, value), weight) in enumerate(zip(named, weights, strict=True))
    ]


def shares(values: Sequence[Decimal], *, places: int | None = RATIO_PLACES) -> list[Decimal] | None:
    """Each of `values` (none negative) as a share of their sum, rounded to `places` by the
    largest-remainder method so that they sum to exactly 1 (None keeps full precision); None
    when the sum is not positive."""
    total = sum(values, ZERO)
    if total <= 0:
        return None
    weights = [v / total for v in values]
    return weights if places is None else _largest_remainder(weights, places)


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
        start = months_before(today, months[key])
    elif key == "ytd":
        start = date(today.year - 1, 12, 31)
    elif key == "all":
        start = today if inception is None else inception - timedelta(days=1)
    else:
        raise InvalidArgument.field("range", f"must be one of {', '.join(RANGES)}")
    if inception is not None:
        start = max(start, inception - timedelta(days=1))
    return min(start, today)


def months_before(day: date, months: int) -> date:
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
    # The gain in its parts (returns.py) and, when asked for, a benchmark over the same days.
    breakdown: Breakdown | None = None
    benchmark: Benchmark | None = None
    currency: str = DEFAULT_CURRENCY
    # The end's market value and cost basis, whose shown difference is the shown unrealized gain.
    market_value: Decimal = ZERO
    cost_basis: Decimal = ZERO
    # Maximum drawdown, volatility, Sharpe and Sortino (risk.py), at the asked risk-free rate.
    risk: RiskFigures | None = None


def performance_report(
    trades: Iterable[Trade],
    history: PriceHistory,
    *,
    range_: str,
    today: date,
    splits: Iterable[Split] = (),
    policy: CashPolicy = CashPolicy.FUND_SHORTFALL,
    method: CostMethod = CostMethod.FIFO,
    rates: RatesBySymbol | None = None,
    trade_rates: Mapping[Trade, Decimal] | None = None,
    benchmark_marks: tuple[str, Mapping[date, Decimal]] | None = None,
    currency: str = DEFAULT_CURRENCY,
    risk_free_rate: Decimal = ZERO,
) -> PerformanceReport:
    """Everything GetPerformance answers, for trades up to the close of `today`.

    `history` is in the portfolio's currency (`currency`). For holdings in other currencies,
    `rates` gives each symbol's rate into it by day and `trade_rates` the rate each trade was
    converted at (both absent: one currency); they split the gain's currency part off.
    `benchmark_marks`: a symbol and its closes in the portfolio's currency to compare with;
    `risk_free_rate`: the yearly rate the Sharpe and Sortino ratios measure excess return over."""
    trades = list(trades)
    by_day: dict[date, list[Trade]] = {}
    for trade in trades:
        by_day.setdefault(trade.day, []).append(trade)
    inception = min(by_day, default=None)
    start = range_start(range_, today, inception=inception)
    series: list[ValuePoint] = []
    opening = (ZERO, ZERO, ZERO)
    last: _Close | None = None
    attribution = Attribution(rates or {}, trade_rates or {})
    closes = _closes(trades, history, start=start, end=today, splits=splits, policy=policy)
    for close in closes:
        point, book = close.point, close.book
        if not series:  # the baseline: its flows are not the range's
            opening = (book.realized_gain(method), book.dividends, book.fees)
            inflow = outflow = ZERO
        else:
            inflow, outflow = point.inflow, point.outflow
        series.append(point)
        day = point.day
        attribution.close(
            day,
            point.value,
            inflow,
            outflow,
            by_day.get(day, ()),
            close.symbols,
            close.quantities,
            close.prices,
        )
        last = close
    assert last is not None  # start <= today, so there is at least the baseline
    last_prices = last.prices_by_symbol()
    totals = last.book.totals(last_prices, method=method)
    market_values = {s: last.book.quantity(s) * p for s, p in last_prices.items()}
    inflows = sum((p.inflow for p in series[1:]), ZERO)
    outflows = sum((p.outflow for p in series[1:]), ZERO)
    returns = daily_returns(series)
    twr = chained(returns)
    compared = None
    if benchmark_marks is not None:
        symbol, marks = benchmark_marks
        days = [
            (p.day, p.value, p.inflow if i else ZERO, p.outflow if i else ZERO)
            for i, p in enumerate(series)
        ]
        compared = benchmark(symbol, marks, days, twr)
    return PerformanceReport(
        range=(range_ or DEFAULT_RANGE).strip().lower(),
        start=start,
        end=today,
        start_value=series[0].value,
        end_value=series[-1].value,
        inflows=inflows,
        outflows=outflows,
        gain=series[-1].value - series[0].value - (inflows - outflows),
        time_weighted_return=twr,
        money_weighted_return=money_weighted_return(series),
        realized_gain=totals.realized_gain - opening[0],
        unrealized_gain=totals.unrealized_gain,
        dividends=totals.dividends - opening[1],
        fees=totals.fees - opening[2],
        allocation=allocation(market_values, totals.cash),
        series=series,
        breakdown=attribution.result(),
        benchmark=compared,
        currency=currency,
        market_value=totals.market_value,
        cost_basis=totals.cost_basis,
        # From the baseline when something was invested then, else from the first day it was.
        risk=risk_figures(start if series[0].value > 0 else None, returns, risk_free_rate),
    )
