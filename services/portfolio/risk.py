"""How risky a range was: maximum drawdown of the time-weighted index, volatility, and the Sharpe
and Sortino ratios.

Pure functions over the range's daily sub-period returns (performance.daily_returns); no I/O.

Conventions, stated once
------------------------
* The index is the TWR's own: 1 at the baseline, times (1 + r_t) each day, r_t the daily
  sub-period return (performance.py: flows in at the start of their day, out at its end). A day
  with nothing invested (no return) leaves it as it was. Deposits and withdrawals move the
  value, not the index, so a withdrawal is never a drawdown.
* Maximum drawdown: the largest fall of the index from its highest level so far,
  1 - I_trough / I_peak (0.25 is a 25 % fall; 0 when it never fell). Its peak day is the first
  day the index stood at that peak; its trough day the first day of the lowest level after it;
  its recovery day the first day after the trough the index is back at the peak (none: not by
  the range's end). Of equal falls, the first. Days are calendar days, the series' own; the
  index stands at 1 from the baseline, or, when nothing was invested then (a range that starts
  before the first trade), from the first day money was (a fall within that very day has it for
  both its peak and its trough). Levels within a ratio of LEVEL_TOLERANCE of each other count
  as equal: each day's return is a division rounded at 28 digits, so a price back at its old
  high can leave the index 1e-28 short of it.
* Trading-day returns: the series has a point for every calendar day, prices carried over
  weekends, so a Saturday's and a Sunday's return is nearly always 0. Counted as returns, those
  zeros would lower the volatility by about sqrt(5/7) (15 %) and the mean return with it. They
  are chained into the next weekday's return instead, (1 + r_Sat)(1 + r_Sun)(1 + r_Mon) - 1, so
  a weekend's trade, flow or rate move still counts, on the Monday; a weekend that ends the
  range, with no weekday after it, is chained into the last weekday's return before it. The
  trading-day returns chain to the TWR: nothing is dropped. Weekday holidays stay as returns of
  0: no exchange calendar is known here (NYSE has about 9 a year, which lowers the volatility by
  about 2 %).
* Volatility: the sample standard deviation (n - 1) of the trading-day returns (simple returns,
  as the TWR chains them), annualized by sqrt(252).
* Sharpe: annualized excess return / volatility. The annualized excess return is the mean of
  the daily excess returns r - rf_d times 252, rf_d = rf / 252 the daily equivalent of the
  yearly risk-free rate rf; it is therefore 252 * mean(r) - rf, the arithmetic annualization
  usual for Sharpe ratios, not the TWR compounded to a year.
* Sortino: the same excess return / the annualized downside deviation,
  sqrt(sum(min(0, r - rf_d)^2) / n) * sqrt(252) over all n trading-day returns (a deviation
  below the target rf_d, not around the mean: no n - 1).
* Volatility, Sharpe and Sortino need at least MIN_RETURNS trading-day returns (fewer say
  little): with fewer they are undefined (None) and the note says why. A deviation that rounds
  to 0 at RATIO_PLACES (as shown) leaves its ratio undefined, not a division by noise. The
  drawdown is a fact of the series, not an estimate: it is given once any return is measured.
* Portfolio Performance, as its code reads (name.abuchen.portfolio.math.Risk and
  PerformanceIndex), takes its volatility from log returns ln(1 + r), drops weekend and holiday
  returns by its trade calendar rather than chaining them, and scales the sample deviation by
  sqrt(n), the whole period's figure rather than a yearly one; its drawdown is taken on the
  same kind of chained index as here. Ours is yearly (sqrt(252)), as brokers' factsheets and
  Sharpe ratios state it, and keeps every return.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from services.portfolio.domain import ONE, RATIO_PLACES, ZERO, parse_decimal
from services.portfolio.wire_numbers import rounded
from services.runtime.errors import InvalidArgument

TRADING_DAYS_PER_YEAR = 252
MIN_RETURNS = 20
RISK_FREE_RATE_PLACES = 8
LEVEL_TOLERANCE = Decimal("1e-20")
RISK_FREE_RATE_FIELD = "riskFreeRate"
_ABOVE, _BELOW = ONE + LEVEL_TOLERANCE, ONE - LEVEL_TOLERANCE
_YEAR = Decimal(TRADING_DAYS_PER_YEAR)
_ROOT_YEAR = _YEAR.sqrt()
_SATURDAY = 5

DailyReturn = tuple[date, Decimal | None]


@dataclass(frozen=True)
class Drawdown:
    """The largest fall of the index: a ratio, and its days (all None when it never fell)."""

    ratio: Decimal
    peak: date | None = None
    trough: date | None = None
    recovery: date | None = None


@dataclass(frozen=True)
class RiskFigures:
    """A range's risk figures; None is undefined, and `note` says why."""

    drawdown: Drawdown | None
    volatility: Decimal | None
    sharpe: Decimal | None
    sortino: Decimal | None
    risk_free_rate: Decimal
    trading_days: int
    note: str = ""


def parse_risk_free_rate(raw: str) -> Decimal:
    """The request's yearly risk-free rate, a fraction above -1 and below 1 ("" is 0)."""
    if not raw.strip():
        return ZERO
    rate = parse_decimal(RISK_FREE_RATE_FIELD, raw, places=RISK_FREE_RATE_PLACES)
    if not -ONE < rate < ONE:
        raise InvalidArgument.field(
            RISK_FREE_RATE_FIELD, "must be a yearly rate as a fraction above -1 and below 1"
        )
    return rate


def max_drawdown(start: date | None, returns: Iterable[DailyReturn]) -> Drawdown | None:
    """The largest fall of the index that stands at 1 on `start` (the baseline; None: nothing
    was invested then, and it stands at 1 from the first day with a return) and moves by each
    day's return; None when no return was measured."""
    index = peak = ONE
    peak_day = start
    worst = ZERO
    # Levels compared with, worked out when the peak or the worst fall moves, not every day:
    # a new peak is above `above`; a fall deeper than the worst so far is below `floor`.
    above, floor = peak * _ABOVE, peak * _BELOW
    found: tuple[date | None, date, Decimal] | None = None  # peak day, trough day, peak level
    recovered_at = ZERO  # the level that ends the worst fall (its peak, within tolerance)
    recovery: date | None = None
    measured = False
    for day, r in returns:
        if r is None:
            continue
        measured = True
        if peak_day is None:
            peak_day = day
        index *= ONE + r
        if index > above:
            peak, peak_day = index, day
            above, floor = peak * _ABOVE, peak * (ONE - max(worst, LEVEL_TOLERANCE))
        elif index < floor:
            fall = ONE - index / peak
            if fall > worst:
                worst, found, recovery = fall, (peak_day, day, peak), None
                recovered_at, floor = peak * _BELOW, index
                continue
        if found is not None and recovery is None and index >= recovered_at:
            recovery = day
    if not measured:
        return None
    if found is None:
        return Drawdown(ZERO)
    assert found[0] is not None  # set on the first measured day at the latest
    return Drawdown(worst, found[0], found[1], recovery)


def trading_day_returns(returns: Iterable[DailyReturn]) -> list[Decimal]:
    """The measured returns with each Saturday's and Sunday's chained into the next weekday's
    (a weekend at the end into the last weekday's before it)."""
    folded: list[Decimal] = []
    pending = ONE  # the weekend's growth, not yet chained into a weekday
    for day, r in returns:
        if r is None:
            continue
        if day.weekday() >= _SATURDAY:
            pending *= ONE + r
        elif pending == ONE:  # nothing to chain: the day's own return, every digit of it
            folded.append(r)
        else:
            folded.append(pending * (ONE + r) - ONE)
            pending = ONE
    if pending != ONE:
        if folded:
            folded[-1] = (ONE + folded[-1]) * pending - ONE
        else:
            folded.append(pending - ONE)
    return folded


def volatility(returns: Sequence[Decimal]) -> Decimal | None:
    """The annualized sample standard deviation of trading-day returns (None under two)."""
    n = len(returns)
    if n < 2:
        return None
    mean = sum(returns, ZERO) / n
    variance = sum(((r - mean) ** 2 for r in returns), ZERO) / (n - 1)
    return variance.sqrt() * _ROOT_YEAR


def downside_deviation(returns: Sequence[Decimal], target: Decimal) -> Decimal | None:
    """The annualized root mean square of the shortfalls below `target` (a daily return)."""
    if not returns:
        return None
    shortfalls = sum(((r - target) ** 2 for r in returns if r < target), ZERO)
    return (shortfalls / len(returns)).sqrt() * _ROOT_YEAR


def annualized_excess_return(returns: Sequence[Decimal], risk_free_rate: Decimal) -> Decimal:
    """252 times the mean daily return less the risk-free rate's daily equivalent."""
    return sum(returns, ZERO) / len(returns) * _YEAR - risk_free_rate


def _ratio(excess: Decimal, deviation: Decimal | None) -> Decimal | None:
    if deviation is None or _shown_as_zero(deviation):
        return None
    return excess / deviation


def _shown_as_zero(value: Decimal) -> bool:
    return rounded(value, RATIO_PLACES) == 0


def risk_figures(
    start: date | None, returns: Sequence[DailyReturn], risk_free_rate: Decimal = ZERO
) -> RiskFigures:
    """The risk figures of a range whose baseline is `start` (None: nothing was invested at
    it) and whose days after it have `returns` (None: nothing invested that day), at a yearly
    `risk_free_rate`."""
    drawdown = max_drawdown(start, returns)
    trading = trading_day_returns(returns)
    if len(trading) < MIN_RETURNS:
        note = (
            f"volatility, Sharpe and Sortino need at least {MIN_RETURNS} trading-day returns;"
            f" this range has {len(trading)}"
        )
        return RiskFigures(drawdown, None, None, None, risk_free_rate, len(trading), note)
    spread = volatility(trading)
    downside = downside_deviation(trading, risk_free_rate / _YEAR)
    excess = annualized_excess_return(trading, risk_free_rate)
    sharpe, sortino = _ratio(excess, spread), _ratio(excess, downside)
    notes = []
    if sharpe is None:
        notes.append("Sharpe is undefined: the trading-day returns did not vary")
    if sortino is None:
        notes.append("Sortino is undefined: no trading-day return fell below the risk-free rate")
    return RiskFigures(
        drawdown, spread, sharpe, sortino, risk_free_rate, len(trading), "; ".join(notes)
    )
