"""Dividend income, as income investors read it: what a portfolio received, added up by calendar
period and by symbol, its trailing twelve months and yield on cost, and what its holdings are
announced to pay next. Plain Python and `Decimal`: no I/O, no clock, no framework.

Amounts, stated once
--------------------
A dividend is a DIVIDEND trade, and its gross amount is the one the book counts: `Trade.amount`
(shares x dividend per share, or the cash received), stored converted into the portfolio's
currency at the rate of its day (exchange.py). Fees on it (tax withheld, a bank's charge) are
its `fees`, converted the same way; net is gross less fees. Gross amounts are added exactly as
the book adds them (`Book._apply_trade`: in replay order, in the default decimal context), so
over all time the report's gross total is the portfolio's `dividends` figure, every digit.

Periods are UTC calendar months, quarters or years; a period without income between the first
and the last one reported is listed with zeros, so a chart has no gaps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum

from services.portfolio.book_values import order_key
from services.portfolio.exact import plus, times
from services.portfolio.performance import shares
from services.portfolio.periods import Period, anniversary
from services.portfolio.records import RecordedTrade
from services.portfolio.trading import Side, Split, Trade
from services.portfolio.wire_numbers import ZERO, ratio
from services.runtime.errors import InvalidArgument

# A month grouping of a hundred years: a chart's worth, and a bound on the answer's size (a
# request for 0001-01-01 to 9999-12-31 by month would be 119,988 periods).
MAX_PERIODS = 1200
ALL_TIME = Period()


class Grouping(StrEnum):
    """The length of the periods income is added up over. Values are the wire's short names."""

    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"

    @property
    def per_year(self) -> int:
        return _PER_YEAR[self]


_PER_YEAR = {Grouping.MONTH: 12, Grouping.QUARTER: 4, Grouping.YEAR: 1}


# --- calendar periods --------------------------------------------------------------------------


def period_index(day: date, grouping: Grouping) -> int:
    """The number of `day`'s period, counted from year 0 (consecutive periods, consecutive
    numbers): month 2024-03 is 2024 x 12 + 2."""
    per_year = grouping.per_year
    return day.year * per_year + (day.month - 1) * per_year // 12


def period_bounds(index: int, grouping: Grouping) -> tuple[date, date]:
    """The first and last days of period `index`."""
    year, part = divmod(index, grouping.per_year)
    months = 12 // grouping.per_year
    first_month = part * months + 1
    last_month = first_month + months - 1
    return date(year, first_month, 1), _last_day(year, last_month)


def period_label(index: int, grouping: Grouping) -> str:
    """ "2024-03" (month), "2024-Q1" (quarter), "2024" (year)."""
    year, part = divmod(index, grouping.per_year)
    if grouping is Grouping.MONTH:
        return f"{year:04d}-{part + 1:02d}"
    if grouping is Grouping.QUARTER:
        return f"{year:04d}-Q{part + 1}"
    return f"{year:04d}"


def period_count(first: date, last: date, grouping: Grouping) -> int:
    """How many periods run from `first`'s to `last`'s, both included (0 when last < first)."""
    return max(0, period_index(last, grouping) - period_index(first, grouping) + 1)


def _last_day(year: int, month: int) -> date:
    if month == 12:
        return date(year, 12, 31)
    return date(year, month + 1, 1) - timedelta(days=1)


def check_period_count(
    first: date, last: date, grouping: Grouping, *, blame: str, most: int = MAX_PERIODS
) -> None:
    """InvalidArgument naming `blame` when `first` to `last` makes more than `most` periods."""
    count = period_count(first, last, grouping)
    if count > most:
        raise InvalidArgument.field(
            blame,
            f"{first.isoformat()} to {last.isoformat()} makes {count:,} {grouping.value}s, more"
            f" than {most:,}: give a shorter period or a longer grouping",
        )


# --- what was received -------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One dividend as the book counts it: gross and fees in the portfolio's currency (converted
    at the rate of its day), `currency` the one it was paid in."""

    symbol: str
    day: date
    gross: Decimal
    fees: Decimal
    currency: str = ""


def received(history: Iterable[RecordedTrade], currency: str) -> list[Received]:
    """The DIVIDEND trades of a history, in the order given (replay order); a trade recorded
    before currencies (no rate kept) was in the portfolio's `currency`."""
    return [
        Received(
            r.trade.symbol,
            r.trade.day,
            r.trade.amount,  # as Book._apply_trade takes it, converted
            r.trade.fees,
            r.fx.currency if r.fx else currency,
        )
        for r in history
        if r.trade.side is Side.DIVIDEND
    ]


@dataclass
class Amounts:
    """Dividends added up. `gross` is summed as the book sums its dividends (see the module's
    docstring); fees exactly."""

    gross: Decimal = ZERO
    fees: Decimal = ZERO
    count: int = 0

    @property
    def net(self) -> Decimal:
        return self.gross - self.fees

    def add(self, dividend: Received) -> None:
        self.gross += dividend.gross  # the default context, as the book's `_dividends +=`
        self.fees = plus(self.fees, dividend.fees)
        self.count += 1


@dataclass(frozen=True)
class PeriodIncome:
    label: str
    start: date
    end: date
    income: Amounts


@dataclass(frozen=True)
class SymbolIncome:
    """One symbol's dividends of the report; `share` of the report's gross (None when 0), to
    RATIO_PLACES, the shares of a report adding up to exactly 1."""

    symbol: str
    income: Amounts
    share: Decimal | None


@dataclass(frozen=True)
class IncomeReport:
    grouping: Grouping
    totals: Amounts
    periods: tuple[PeriodIncome, ...]
    symbols: tuple[SymbolIncome, ...]


def income_report(
    dividends: Sequence[Received], grouping: Grouping, period: Period = ALL_TIME
) -> IncomeReport:
    """The dividends received in `period` (by their UTC day): their totals, each calendar period
    from `period.start`'s (else the first dividend's) to `period.end`'s (else the last one's)
    with those without income, and each symbol's, the largest gross first.

    InvalidArgument when that makes more than MAX_PERIODS periods, naming `from` when the
    request gave it, else `to`, else `groupBy`."""
    kept = [d for d in dividends if d.day in period]
    first = period.start or (min(d.day for d in kept) if kept else None)
    last = period.end or (max(d.day for d in kept) if kept else None)
    totals = Amounts()
    by_period: dict[int, Amounts] = {}
    by_symbol: dict[str, Amounts] = {}
    for dividend in kept:
        totals.add(dividend)
        by_period.setdefault(period_index(dividend.day, grouping), Amounts()).add(dividend)
        by_symbol.setdefault(dividend.symbol, Amounts()).add(dividend)
    periods: tuple[PeriodIncome, ...] = ()
    if first is not None and last is not None:
        blame = "from" if period.start else "to" if period.end else "groupBy"
        check_period_count(first, last, grouping, blame=blame)
        periods = tuple(
            PeriodIncome(
                period_label(index, grouping),
                *period_bounds(index, grouping),
                by_period.get(index, Amounts()),
            )
            for index in range(period_index(first, grouping), period_index(last, grouping) + 1)
        )
    ranked = sorted(by_symbol.items(), key=lambda item: (-item[1].gross, item[0]))
    # Shares as allocations are shown: to RATIO_PLACES, adding up to exactly 1 (largest
    # remainder), so the column reads 100 % and not 99.99 %.
    weights = shares([a.gross for _, a in ranked]) if ranked else None
    symbols = [
        SymbolIncome(s, a, weights[i] if weights is not None else None)
        for i, (s, a) in enumerate(ranked)
    ]
    return IncomeReport(grouping, totals, periods, tuple(symbols))


# --- the trailing twelve months ----------------------------------------------------------------


def trailing_year(end: date) -> tuple[date, date]:
    """The twelve months ending on `end`, both days included: from the day after the same day a
    year before (29 February: the 28th of the year before, so from 1 March). 365 or 366 days;
    a year 1 `end` starts at date.min."""
    if end.year == 1:
        return date.min, end
    try:
        before = end.replace(year=end.year - 1)
    except ValueError:  # 29 February, and the year before has none
        before = end.replace(year=end.year - 1, day=28)
    return before + timedelta(days=1), end


def income_as_held(
    trades: Iterable[Trade], splits: Iterable[Split], start: date, end: date
) -> dict[str, Decimal]:
    """Per symbol held at the end of `end`: the dividends of `start`..`end` as the shares held
    then would have been paid them. Each dividend's gross is scaled by the shares held at the
    end over the shares held when it was paid (both counted in the shares of `end`: a split
    between them scales the earlier count), so a holding sold down or bought up since it was
    paid yields on what is held, at the rate per share it was paid. The count is the book's
    holding, not the dividend's own quantity (a dividend may be recorded as one cash amount);
    a dividend paid while nothing was held counts as it was paid."""
    held: dict[str, Decimal] = {}
    # symbol -> [gross, shares held when paid (in the shares of the latest split)]
    paid: dict[str, list[list[Decimal]]] = {}
    events: list[Trade | Split] = [*trades, *splits]
    for event in sorted(events, key=order_key):
        if event.day > end:
            break
        symbol = event.symbol
        if isinstance(event, Split):
            held[symbol] = event.scale(held.get(symbol, ZERO))
            for entry in paid.get(symbol, ()):
                entry[1] = event.scale(entry[1])
        elif event.side is Side.BUY:
            held[symbol] = plus(held.get(symbol, ZERO), event.quantity)
        elif event.side is Side.SELL:
            held[symbol] = held.get(symbol, ZERO) - event.quantity
        elif event.side is Side.DIVIDEND and event.day >= start:
            paid.setdefault(symbol, []).append([event.amount, held.get(symbol, ZERO)])
    found: dict[str, Decimal] = {}
    for symbol, entries in paid.items():
        now = held.get(symbol, ZERO)
        if now <= 0:
            continue
        total = ZERO
        for gross, then in entries:
            total = plus(total, gross if then <= 0 else gross * now / then)
        found[symbol] = total
    return found


@dataclass(frozen=True)
class Trailing:
    """The trailing twelve months' income (`income`), and yield on cost.

    Yield on cost = `held_income` / `cost_basis`: the income of those months as the holdings at
    the end of `end` would have been paid it (`income_as_held`: each dividend scaled from the
    shares held when it was paid to those held at the end), over the cost basis of those
    holdings then (FIFO, the buys' fees included, in the portfolio's currency): the trailing
    dividend per share over the cost per share, summed over the holdings that paid. A symbol
    sold off since it paid is left out of both; one sold down to a share yields on that share,
    not on the income the whole holding was paid (which made 194 % of a 2 % yield). None when
    the cost basis is 0 (nothing that paid is held)."""

    start: date
    end: date
    income: Amounts
    held_income: Decimal
    cost_basis: Decimal

    @property
    def yield_on_cost(self) -> Decimal | None:
        return ratio(self.held_income, self.cost_basis)


def trailing_income(
    dividends: Iterable[Received],
    end: date,
    basis: Mapping[str, Decimal],
    as_held: Mapping[str, Decimal],
) -> Trailing:
    """The twelve months to `end` (`trailing_year`); `basis` is the cost basis of each symbol
    held at the end of `end` (symbols not held: absent, or 0), `as_held` the months' income of
    each as those holdings would have been paid it (`income_as_held` over the same months)."""
    start, end = trailing_year(end)
    income = Amounts()
    for dividend in dividends:
        if start <= dividend.day <= end:
            income.add(dividend)
    cost = held_income = ZERO
    for symbol in sorted(as_held):
        if basis.get(symbol, ZERO) > 0:
            cost = plus(cost, basis[symbol])
            held_income = plus(held_income, as_held[symbol])
    return Trailing(start, end, income, held_income, cost)


# --- what is announced -------------------------------------------------------------------------


def next_year(today: date) -> tuple[date, date]:
    """The twelve months after `today`: tomorrow to the same day next year (a dividend going ex
    today is paid to yesterday's holders: it is received, not projected)."""
    return today + timedelta(days=1), anniversary(today)


@dataclass(frozen=True)
class Listing:
    """A holding's trading currency and today's rate into the portfolio's currency."""

    currency: str
    rate: Decimal


@dataclass(frozen=True)
class ProjectedDividend:
    symbol: str
    ex_date: date
    quantity: Decimal
    per_share: Decimal  # in `currency`
    currency: str
    rate: Decimal

    @property
    def amount(self) -> Decimal:
        """In the portfolio's currency, at today's rate."""
        return times(times(self.quantity, self.per_share), self.rate)


@dataclass(frozen=True)
class Projection:
    """The dividends announced for the holdings from `start` to `end`; `unpriced`: symbols held
    with announced dividends whose currency or rate is not known now (left out, not guessed)."""

    start: date
    end: date
    dividends: tuple[ProjectedDividend, ...]
    unpriced: tuple[str, ...] = field(default=())

    @property
    def total(self) -> Decimal:
        total = ZERO
        for dividend in self.dividends:
            total = plus(total, dividend.amount)
        return total


def projected_income(
    holdings: Mapping[str, Decimal],
    calendar: Mapping[str, Mapping[date, Decimal]],
    listings: Mapping[str, Listing],
    today: date,
) -> Projection:
    """The shares held now (`holdings`, symbol -> quantity) times each dividend per share the
    `calendar` announces (symbol -> ex-date -> amount, in the listing's currency) in the next
    twelve months (`next_year`), converted at today's rate (`listings`); by ex-date, then
    symbol. Splits to come are not known, so none is applied."""
    start, end = next_year(today)
    found: list[ProjectedDividend] = []
    unpriced: list[str] = []
    for symbol, quantity in sorted(holdings.items()):
        announced = {d: a for d, a in calendar.get(symbol, {}).items() if start <= d <= end}
        if quantity <= 0 or not announced:
            continue
        listing = listings.get(symbol)
        if listing is None:
            unpriced.append(symbol)
            continue
        found.extend(
            ProjectedDividend(symbol, day, quantity, per_share, listing.currency, listing.rate)
            for day, per_share in announced.items()
        )
    found.sort(key=lambda p: (p.ex_date, p.symbol))
    return Projection(start, end, tuple(found), tuple(unpriced))
