"""A range's gain in its parts (capital, dividends, currency, fees) and against a benchmark.

Pure functions over what the value series is built from; no I/O, no clock.

The three-part return, stated once
----------------------------------
Day by day, the gain of day t is g_t = V_t + out_t - V_{t-1} - in_t (the numerator of the
day's TWR sub-period return), and the range's gain is the sum of the g_t. Each g_t splits into:

* dividends: what the day's dividends put into cash (amount less withheld tax), converted at
  their day's rate;
* fees: minus the fees of the day's other trades (buys, sells, deposits, withdrawals);
* currency: what the moves of exchange rates did to the holdings in other currencies: for a
  holding carried into the day, q * M_{t-1} * (X_t / X_{t-1} - 1) (M the mark in the
  portfolio's currency, X the rate of the holding's currency); for a share bought or sold
  that day at a price converted at rate x, +-qty * price * (X_t / x - 1);
* capital: the rest, g_t - dividends - fees - currency: the moves of prices in their own
  currency (converted at the day's rate), and what trading at a price other than the close did.

So capital + dividends + currency + fees == total, exactly, in Decimal, every day and for the
range. A portfolio kept in one currency has a currency part of exactly zero.

Contributions to the TWR link the days: part k contributes sum_t (g_{k,t} / base_t) * G_{t-1},
base_t = V_{t-1} + in_t, G_t the growth chained to day t. Summed over the parts that is
sum_t r_t * G_{t-1} = G_T - 1, the TWR (days with nothing invested are skipped, as the TWR
skips them). Arithmetic is exact but for the divisions, kept to PRECISION digits.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

from services.portfolio.domain import ONE, ZERO, Side, Trade

PRECISION = 60
SUM_PRECISION = 400
CURRENCY_STEP = Decimal(1).scaleb(-20)
RatesBySymbol = Mapping[str, Mapping[date, Decimal]]


@dataclass(frozen=True)
class Breakdown:
    total: Decimal
    capital: Decimal
    dividends: Decimal
    currency: Decimal
    fees: Decimal
    total_contribution: Decimal
    capital_contribution: Decimal
    dividend_contribution: Decimal
    currency_contribution: Decimal
    fees_contribution: Decimal


class RateCursor:
    """The last rate known on or before a day, for days asked in increasing order; before
    the first one known, the first one (a rate a little early beats none)."""

    def __init__(self, rates: Mapping[date, Decimal]) -> None:
        self._rates = sorted(rates.items())
        self._next = 0
        self.last: Decimal | None = self._rates[0][1] if self._rates else None

    def at(self, day: date) -> Decimal:
        while self._next < len(self._rates) and self._rates[self._next][0] <= day:
            self.last = self._rates[self._next][1]
            self._next += 1
        return ONE if self.last is None else self.last


def converted_closes(
    closes: Mapping[date, Decimal], rates: Mapping[date, Decimal] | None
) -> dict[date, Decimal]:
    """Each close times the rate of its day (the last one known on or before it)."""
    if not rates:
        return dict(closes)
    # RateCursor's rule, without a cursor: a close's day nearly always has a rate of its own.
    known = sorted(rates)
    converted: dict[date, Decimal] = {}
    for day, close in sorted(closes.items()):
        rate = rates.get(day)
        if rate is None:
            following = bisect_right(known, day)
            rate = rates[known[following - 1 if following else 0]]
        converted[day] = close * rate
    return converted


class Attribution:
    """Collects the parts of each day's gain; `result()` sums the range."""

    def __init__(self, rates: RatesBySymbol, trade_rates: Mapping[Trade, Decimal]) -> None:
        # One cursor per rate series (symbols of one currency share theirs).
        self._cursors: dict[int, RateCursor] = {}
        self._series_of: dict[str, int] = {}
        for symbol, series in rates.items():
            if series:
                self._cursors.setdefault(id(series), RateCursor(series))
                self._series_of[symbol] = id(series)
        self._trade_rates = trade_rates
        self._parts = [ZERO] * 4  # capital, dividends, currency, fees
        self._contributions = [ZERO] * 4
        self._growth = ONE
        # What is held at the last close: quantity and mark per symbol.
        self._quantities: Mapping[str, Decimal] = {}
        self._marks: Mapping[str, Decimal] = {}
        self._rates_before: dict[int, Decimal] = {}  # per rate series, as self._cursors
        self._previous_value: Decimal | None = None
        self._context = Context(prec=PRECISION)

    def close(
        self,
        day: date,
        value: Decimal,
        inflow: Decimal,
        outflow: Decimal,
        trades: Sequence[Trade],
        quantities: Mapping[str, Decimal],
        marks: Mapping[str, Decimal],
    ) -> None:
        """Day `day`'s close: its value and flows, the trades of that day, and what is held at
        its end: the quantity and the mark of each symbol in `marks` (in their order). Both
        mappings are kept until the next close, unchanged: the series builds new ones for a day
        whose holdings or prices moved. The first call is the baseline."""
        with localcontext(self._context):
            # Kept per series, not per symbol: the symbols of one currency share a rate.
            rates = {key: cursor.at(day) for key, cursor in self._cursors.items()}
            if self._previous_value is not None:
                self._add_day(day, value, inflow, outflow, trades, rates)
            self._previous_value = value
            self._quantities, self._marks = quantities, marks
            self._rates_before = rates

    def _add_day(
        self,
        day: date,
        value: Decimal,
        inflow: Decimal,
        outflow: Decimal,
        trades: Sequence[Trade],
        rates: dict[int, Decimal],
    ) -> None:
        assert self._previous_value is not None
        gain = value + outflow - self._previous_value - inflow
        dividends = fees = currency = ZERO
        for trade in trades:
            if trade.side is Side.DIVIDEND:
                dividends += trade.amount - trade.fees
            else:
                fees -= trade.fees
            rate = self._trade_rates.get(trade)
            now = self._rate_of(trade.symbol, rates)
            if trade.side.trades_shares and rate and now is not None and rate != now:
                signed = trade.quantity if trade.side is Side.BUY else -trade.quantity
                currency += signed * trade.price * (now / rate - ONE)
        if rates != self._rates_before:  # else no holding's rate moved (a weekend)
            before = self._rates_before
            moved = {key for key, now in rates.items() if now != before[key]}
            # One quotient per series and day, shared by the holdings of its currency.
            moves: dict[int, Decimal] = {}
            quantities, series_of = self._quantities, self._series_of
            for symbol, mark in self._marks.items():
                key = series_of.get(symbol)
                if key not in moved:  # in the portfolio's currency (None), or its rate held
                    continue
                move = moves.get(key)
                if move is None:
                    move = moves[key] = rates[key] / before[key] - ONE
                currency += quantities[symbol] * mark * move
        # The rates' quotient is the one inexact step: kept to 20 places (CURRENCY_STEP), far
        # below a cent and far above the division's error, so 1.2/1.1 of 1100 gives 100.
        currency = currency.quantize(CURRENCY_STEP, rounding=ROUND_HALF_EVEN)
        capital = gain - dividends - fees - currency
        # Added part by part in place, not zipped into new lists: this runs every day.
        sums = self._parts
        sums[0] += capital
        sums[1] += dividends
        sums[2] += currency
        sums[3] += fees
        base = self._previous_value + inflow
        if base > 0:
            weight = self._growth / base
            # Kept to PRECISION digits: the parts' sum is taken exactly in `result`.
            contributions = self._contributions
            contributions[0] += capital * weight
            contributions[1] += dividends * weight
            contributions[2] += currency * weight
            contributions[3] += fees * weight
            self._growth *= ONE + gain / base

    def _rate_of(self, symbol: str, rates: dict[int, Decimal]) -> Decimal | None:
        key = self._series_of.get(symbol)
        return None if key is None else rates[key]

    def result(self) -> Breakdown:
        capital, dividends, currency, fees = self._parts
        c_capital, c_dividends, c_currency, c_fees = self._contributions
        # Sums of terms of PRECISION digits at different scales: wide enough to keep them all.
        with localcontext(Context(prec=SUM_PRECISION)):
            return Breakdown(
                total=capital + dividends + currency + fees,
                capital=capital,
                dividends=dividends,
                currency=currency,
                fees=fees,
                total_contribution=c_capital + c_dividends + c_currency + c_fees,
                capital_contribution=c_capital,
                dividend_contribution=c_dividends,
                currency_contribution=c_currency,
                fees_contribution=c_fees,
            )


# --- benchmark -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkPoint:
    day: date
    value: Decimal


@dataclass(frozen=True)
class Benchmark:
    """What the same money would have done in `symbol`: its own TWR over the range's days, the
    what-if values (the baseline value bought it, each inflow bought more, each outflow sold
    some, at the day's close in the portfolio's currency), alpha = the portfolio's TWR - the
    benchmark's, tracking difference = the portfolio's end value - the what-if end value."""

    symbol: str
    time_weighted_return: Decimal | None
    series: list[BenchmarkPoint]
    alpha: Decimal | None
    tracking_difference: Decimal
    end_value: Decimal


def benchmark(
    symbol: str,
    marks: Mapping[date, Decimal],
    days: Sequence[tuple[date, Decimal, Decimal, Decimal]],
    portfolio_twr: Decimal | None,
) -> Benchmark:
    """`marks`: the benchmark's closes in the portfolio's currency; `days`: (day, value,
    inflow, outflow) of the portfolio's series, the first the baseline. A day without a close
    uses the last one before it; before the first close the money waits in cash."""
    with localcontext(Context(prec=PRECISION)):
        cursor = RateCursor(marks)
        known = sorted(marks)
        units = ZERO
        waiting = ZERO  # money not yet invested: no close known yet
        series: list[BenchmarkPoint] = []
        first_mark: Decimal | None = None
        last_mark: Decimal | None = None
        for i, (day, value, inflow, outflow) in enumerate(days):
            mark = cursor.at(day) if known and known[0] <= day else None
            waiting += value if i == 0 else inflow
            if mark is not None and mark > 0:
                first_mark = first_mark or mark
                last_mark = mark
                units += waiting / mark
                waiting = ZERO
                holding = units * mark
                sold = min(outflow, holding) if i else ZERO
                units -= sold / mark
                series.append(BenchmarkPoint(day, units * mark))
            else:
                waiting -= min(outflow, waiting) if i else ZERO
                series.append(BenchmarkPoint(day, waiting))
        twr = None
        if first_mark is not None and last_mark is not None:
            twr = last_mark / first_mark - ONE
        end_value = series[-1].value if series else ZERO
        portfolio_end = days[-1][1] if days else ZERO
        return Benchmark(
            symbol=symbol,
            time_weighted_return=twr,
            series=series,
            alpha=None if twr is None or portfolio_twr is None else portfolio_twr - twr,
            tracking_difference=portfolio_end - end_value,
            end_value=end_value,
        )
