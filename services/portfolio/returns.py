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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from functools import reduce
from itertools import compress, repeat
from operator import add, call, is_, itemgetter, mul
from typing import TypeVar

from services.portfolio.domain import ONE, ZERO, Side, Trade

PRECISION = 60
SUM_PRECISION = 400
CURRENCY_STEP = Decimal(1).scaleb(-20)
# Less than half a CURRENCY_STEP, with room for the rounding of the comparison's own sum.
HALF_STEP_MARGIN = Decimal("4E-21")
# Below this adjusted exponent a sum on CURRENCY_STEP has fewer than PRECISION digits (quantize
# cannot fail on it).
MAX_STEP_DIGITS = PRECISION - 22
RatesBySymbol = Mapping[str, Mapping[date, Decimal]]
T = TypeVar("T")
ONE_DAY = timedelta(days=1)
# The sides by module name: a member named on its class costs a descriptor call (Python 3.11).
_BUY, _SELL, _DIVIDEND = Side.BUY, Side.SELL, Side.DIVIDEND


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
    """Each close times the rate of its day (the last one known on or before it); and a day
    with a rate but no close (the exchange shut, the currency trading), from the first close
    on, the last close before it times that day's rate: a holding's value moves with the rate
    on such a day too, as the attribution's currency part counts it. `rates` None: the
    closes are in the portfolio's currency already; empty: no rate is known, and no close can
    be converted (taken as they are, dollars were counted as euros)."""
    if rates is None:
        return dict(closes)
    if not rates:
        return {}
    converted = _converted_on_close_days(closes, rates)
    if not converted:
        return converted
    first = min(converted)
    shut = sorted(day for day in rates if day > first and day not in closes)
    if not shut:
        return converted
    close_days = sorted(closes)
    for day in shut:
        last = close_days[bisect_right(close_days, day) - 1]
        converted[day] = closes[last] * rates[day]
    return dict(sorted(converted.items()))


def _converted_on_close_days(
    closes: Mapping[date, Decimal], rates: Mapping[date, Decimal]
) -> dict[date, Decimal]:
    listed = list(closes)
    days = sorted(listed)
    # Closes nearly always come in date order: their values are then in the days' order.
    ordered: Iterable[Decimal] = (
        closes.values() if days == listed else map(closes.__getitem__, days)
    )
    day_rates: list[Decimal | None] = list(map(rates.get, days))
    # RateCursor's rule, without a cursor: a close's day nearly always has a rate of its own.
    # (Looked for by identity: a Decimal compared with None asks numbers.Rational, slowly.)
    if any(map(is_, day_rates, repeat(None))):
        known = sorted(rates)
        for index, day in enumerate(days):
            if day_rates[index] is None:
                following = bisect_right(known, day)
                day_rates[index] = rates[known[following - 1 if following else 0]]
    return dict(zip(days, map(mul, ordered, day_rates), strict=True))


class Attribution:
    """Collects the parts of each day's gain; `result()` sums the range."""

    def __init__(self, rates: RatesBySymbol, trade_rates: Mapping[Trade, Decimal]) -> None:
        # One cursor per rate series (symbols of one currency share theirs), by position.
        series_list: list[Mapping[date, Decimal]] = []
        self._series_of: dict[str, int] = {}
        position_of: dict[int, int] = {}
        for symbol, series in rates.items():
            if series:
                if id(series) not in position_of:
                    position_of[id(series)] = len(series_list)
                    series_list.append(series)
                self._series_of[symbol] = position_of[id(series)]
        self._cursors = [RateCursor(series) for series in series_list]
        self._trade_rates = trade_rates
        # The same rates by the trade's identity: a trade's hash works out every field's.
        self._rate_of_trade = {id(trade): rate for trade, rate in trade_rates.items()}
        self._parts = [ZERO] * 4  # capital, dividends, currency, fees
        self._contributions = [ZERO] * 4
        self._growth = ONE
        # What is held at the last close: symbols, and the quantity and mark of each.
        self._symbols: tuple[str, ...] = ()
        self._quantities: Sequence[Decimal] = ()
        self._marks: Sequence[Decimal] = ()
        self._in_other_currencies = _Foreign((), {})
        self._rates_before: tuple[Decimal, ...] = ()  # per rate series, as self._cursors
        # The same series, by day: each one's rate dated the day, else the default given.
        self._rate_on: list[Callable[[date, Decimal], Decimal]] = [
            series.get for series in series_list
        ]
        self._last_day: date | None = None
        self._previous_value: Decimal | None = None
        self._quiet = False  # the last day was quiet (see `close`)
        self._context = Context(prec=PRECISION)

    def close(
        self,
        day: date,
        value: Decimal,
        inflow: Decimal,
        outflow: Decimal,
        trades: Sequence[Trade],
        symbols: tuple[str, ...],
        quantities: Sequence[Decimal],
        marks: Sequence[Decimal],
    ) -> None:
        """Day `day`'s close: its value and flows, the trades of that day, and what is held at
        its end: `symbols`, and the quantity and the mark of each, in their order. All three
        are kept until the next close, unchanged. The first call is the baseline; days come in
        increasing order."""
        rates = self._rates_on(day)
        if self._previous_value is not None:
            # A quiet day (the very value of the day before, flows that are ZERO itself, no
            # trade, no rate moved) adds zeros to the sums and multiplies the growth by exactly
            # Decimal(1) (the gain over the base is 0E0, whatever the value's exponent). Adding
            # the same zeros again changes nothing, digits or exponents: a quiet day after a
            # quiet day (a Sunday) is left out. Identity, not equality: an equal value of
            # another exponent would add other zeros.
            quiet = (
                value is self._previous_value
                and inflow is ZERO
                and outflow is ZERO
                and not trades
                and rates is self._rates_before
            )
            if not (quiet and self._quiet):
                with localcontext(self._context):
                    self._add_day(value, inflow, outflow, trades, rates)
            self._quiet = quiet
        self._previous_value = value
        self._symbols, self._quantities, self._marks = symbols, quantities, marks
        self._rates_before = rates

    def _rates_on(self, day: date) -> tuple[Decimal, ...]:
        """Each series' rate on `day`: the very tuple of the day before when no series has a
        rate dated `day` (weekends), so that an unchanged tuple is the same one."""
        before, last_day = self._rates_before, self._last_day
        self._last_day = day
        if last_day is not None and day - last_day == ONE_DAY:
            # The day after the last one asked: a series' rate moves only with a rate of the
            # day itself (RateCursor's rule, without walking the cursors every day).
            # rate_on(day, rate before) for each series, in a C loop.
            rates = tuple(map(call, self._rate_on, repeat(day), before))
            return before if all(map(is_, rates, before)) else rates
        return tuple([cursor.at(day) for cursor in self._cursors])

    def _add_day(
        self,
        value: Decimal,
        inflow: Decimal,
        outflow: Decimal,
        trades: Sequence[Trade],
        rates: tuple[Decimal, ...],
    ) -> None:
        assert self._previous_value is not None
        gain = value + outflow - self._previous_value - inflow
        dividends = fees = currency = ZERO
        if trades:
            dividends, fees, currency = self._trading(trades, rates)
        if rates is not self._rates_before:  # else no holding's rate moved (a weekend)
            currency = self._holdings_currency(currency, rates)
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

    def _trading(
        self, trades: Sequence[Trade], rates: tuple[Decimal, ...]
    ) -> tuple[Decimal, Decimal, Decimal]:
        """The day's dividends, fees, and what the rate's move since each trade's own rate did
        to the shares it bought or sold."""
        dividends = fees = currency = ZERO
        for trade in trades:
            side = trade.side
            if side is _DIVIDEND:
                dividends += trade.amount - trade.fees
            else:
                fees -= trade.fees
            if side is not _BUY and side is not _SELL:
                continue
            key = self._series_of.get(trade.symbol)
            if key is None:  # in the portfolio's currency
                continue
            rate = self._rate_of_trade.get(id(trade))
            if rate is None:
                rate = self._trade_rates.get(trade)
            now = rates[key]
            if rate and rate != now:
                signed = trade.quantity if side is _BUY else -trade.quantity
                currency += signed * trade.price * (now / rate - ONE)
        return dividends, fees, currency

    def _holdings_currency(self, currency: Decimal, rates: tuple[Decimal, ...]) -> Decimal:
        """`currency` plus what the rates' moves did to the holdings carried into the day:
        the same step of CURRENCY_STEP as `_holdings_currency_in_order` gives, worked out
        more quickly whenever that is provably the same (see `_by_currency`)."""
        if self._in_other_currencies.symbols is not self._symbols:
            self._in_other_currencies = _Foreign(self._symbols, self._series_of)
        try:
            quick = self._by_currency(currency, rates)
        except ArithmeticError:  # a value that is not a number: the in-order way says what
            quick = None
        return self._holdings_currency_in_order(currency, rates) if quick is None else quick

    def _by_currency(self, currency: Decimal, rates: tuple[Decimal, ...]) -> Decimal | None:
        """`_holdings_currency`, already on CURRENCY_STEP, or None when it cannot tell.

        Each currency's holdings are added up first and their sum taken times the rate's move
        once (a product per currency, not one per holding). This way and the holding-by-holding
        one both round each step at PRECISION digits, by at most 0.5e-59 of the step's size,
        and no step is larger than T = |currency| + the terms' sizes (`bound`; the holdings'
        values are positive), so the two sums lie within `bound * foreign.error` of each other
        (see `_Foreign`). When this sum is further than that from a half step, both round to
        the same step, digit for digit. Otherwise, and for a zero (whose sign the order of the
        terms decides), None: the caller adds holding by holding."""
        before = self._rates_before
        foreign = self._in_other_currencies
        if not foreign.groups:  # nothing held in another currency
            return currency
        held = list(map(mul, foreign.pick(self._quantities), foreign.pick(self._marks)))
        if min(held) < 0:  # the bound below takes the holdings' values as positive
            return None
        total, bound = currency, abs(currency)
        moved = False
        for key, pick in foreign.groups:
            now, then = rates[key], before[key]
            if now == then:
                continue
            moved = True
            term = (now / then - ONE) * sum(pick(held), ZERO)
            total += term
            bound += abs(term)
        if not moved:  # no rate of a holding moved (the in-order way adds nothing either)
            return currency
        if not total.is_finite() or total.adjusted() >= MAX_STEP_DIGITS:
            return None
        stepped = total.quantize(CURRENCY_STEP, rounding=ROUND_HALF_EVEN)
        if stepped and abs(total - stepped) + bound * foreign.error < HALF_STEP_MARGIN:
            return stepped
        return None

    def _holdings_currency_in_order(self, currency: Decimal, rates: tuple[Decimal, ...]) -> Decimal:
        """`currency` plus what the rates' moves did to the holdings carried into the day,
        added in the holdings' order (in the current context: operators, not the context's
        methods, which parse their arguments)."""
        before = self._rates_before
        moved = [now != then for now, then in zip(rates, before, strict=True)]
        if not any(moved):
            return currency
        foreign = self._in_other_currencies
        # One quotient per series and day, shared by the holdings of its currency; only for a
        # series that moved and is held (ZERO stands for the others: `taken` leaves them out).
        moves = [
            rates[key] / before[key] - ONE if moved[key] and key in foreign.used else ZERO
            for key in range(len(rates))
        ]
        taken = [moved[key] for key in foreign.series]
        terms = map(
            mul,
            map(
                mul,
                compress(foreign.pick(self._quantities), taken),
                compress(foreign.pick(self._marks), taken),
            ),
            compress([moves[key] for key in foreign.series], taken),
        )
        return reduce(add, terms, currency)

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


class _Foreign:
    """The holdings in other currencies among `symbols`: their positions and rate series."""

    def __init__(self, symbols: tuple[str, ...], series_of: Mapping[str, int]) -> None:
        self.symbols = symbols
        found = [(i, series_of[s]) for i, s in enumerate(symbols) if s in series_of]
        positions = [i for i, _ in found]
        self.series = [key for _, key in found]
        self.used = set(self.series)
        # The values of the holdings in other currencies, in the holdings' order; and per
        # series held, a getter of its holdings' values among those.
        self.pick: Callable[[Sequence[Decimal]], Sequence[Decimal]] = values_at(positions)
        self.groups = [
            (key, values_at([j for j, k in enumerate(self.series) if k == key]))
            for key in sorted(self.used)
        ]
        # Per unit of the terms' size T (see Attribution._by_currency): the two ways of adding
        # n holdings up round 2n + k + 5 times at most (k currencies), each by at most
        # 0.5e-59 T; (n + 1) * 1e-57 is more than that, forty times over at least.
        self.error = Decimal(len(positions) + 1).scaleb(-57)


def values_at(positions: list[int]) -> Callable[[Sequence[T]], Sequence[T]]:
    """The values at `positions` (none, one or more) of a sequence, as a sequence: an
    itemgetter, which alone answers a bare value for one position and fails for none."""
    if len(positions) > 1:
        return itemgetter(*positions)
    if not positions:
        return lambda values: ()
    (position,) = positions
    return lambda values: (values[position],)


# --- benchmark -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)  # slots: a benchmark's series holds one for every day
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
    end_value: Decimal
    # The portfolio's own figures, kept so the wire can state alpha and the tracking difference
    # as differences of the figures shown beside them.
    portfolio_time_weighted_return: Decimal | None
    portfolio_end_value: Decimal

    @property
    def alpha(self) -> Decimal | None:
        mine, theirs = self.portfolio_time_weighted_return, self.time_weighted_return
        return None if mine is None or theirs is None else mine - theirs

    @property
    def tracking_difference(self) -> Decimal:
        return self.portfolio_end_value - self.end_value


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
        known = sorted(marks)
        closes = list(map(marks.__getitem__, known))
        taken = 0  # how many of the closes are dated on or before the day
        units = ZERO
        waiting = ZERO  # money not yet invested: no close known yet
        series: list[BenchmarkPoint] = []
        first_mark: Decimal | None = None
        last_mark: Decimal | None = None
        for i, (day, value, inflow, outflow) in enumerate(days):
            # The last close on or before the day (days come in increasing order).
            while taken < len(known) and known[taken] <= day:
                taken += 1
            mark = closes[taken - 1] if taken and known[0] <= day else None
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
            end_value=end_value,
            portfolio_time_weighted_return=portfolio_twr,
            portfolio_end_value=portfolio_end,
        )
