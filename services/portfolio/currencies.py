"""Currencies and exchange rates: the codes the service keeps money in, a rate as a source
quotes it, and the simulated market's rates.

Rates, stated once: a rate `base/quote` says how many `quote` one `base` buys (EUR/USD 1.0843).
Daily closes are kept like prices, one per weekday; a day without one takes the last close
before it. Converting money multiplies by the rate, exactly (no rounding until the wire).

The simulated rates depend only on the seed and the calendar day, never on when a replica
started: every replica of a deployment quotes the same rate for a day without sharing anything,
and a rate of today is its close (the simulated market does not move currencies within a day).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Protocol

from services.runtime.errors import InvalidArgument, NotFound

ONE = Decimal(1)
# The codes portfolios, listings and rates may use. A code outside it is refused with 422:
# no source here can price it.
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF")
# Cross rates (neither side USD) are quoted to this many significant digits, as dealers do.
CROSS_DIGITS = 6


@dataclass(frozen=True)
class FxRate:
    """How many `quote` one `base` buys, as of `day` (the close used) or live at `time`."""

    base: str
    quote: str
    rate: Decimal
    day: date
    source: str
    stale: bool = False


class FxSource(Protocol):
    """What a market source answers about currencies (mock_market, alpha_vantage, shared)."""

    async def fx_rate(self, base: str, quote: str) -> FxRate:
        """The latest rate; NotFound for a pair the source cannot price."""
        ...

    async def fx_daily(self, base: str, quote: str, start: date, end: date) -> dict[date, Decimal]:
        """Daily closes from `start` to `end`, both included; days without one are absent."""
        ...


def require_currency(raw: str, field: str = "currency") -> str:
    """`raw` as an upper-case code the service supports, or InvalidArgument (422) naming
    `field`."""
    code = raw.strip().upper()
    if code not in CURRENCIES:
        raise InvalidArgument.field(field, f"must be one of {', '.join(CURRENCIES)}")
    return code


def rate_pair(base: str, quote: str) -> tuple[str, str]:
    """Both codes checked, for a source asked for a rate: an unknown one is NotFound (there is
    no rate for it), as an unknown symbol is."""
    try:
        return require_currency(base, "from"), require_currency(quote, "to")
    except InvalidArgument as problem:
        raise NotFound(f"no exchange rate for {base}/{quote}", reason="UNKNOWN_CURRENCY") from (
            problem
        )


def pair_key(base: str, quote: str) -> str:
    """How a pair's closes are kept in price_history: no symbol contains '/'."""
    return f"{base}/{quote}"


def close_on(closes: dict[date, Decimal], day: date) -> Decimal | None:
    """The close of `day`, else the latest before it; None when there is none."""
    if day in closes:
        return closes[day]
    earlier = [d for d in closes if d < day]
    return closes[max(earlier)] if earlier else None


# --- the simulated market's rates ------------------------------------------------------------


@dataclass(frozen=True)
class _Pair:
    """A walked pair: USD per unit of `currency` is `level` (inverted for USD/xxx pairs)."""

    currency: str
    level: float  # the pair's level as dealers quote it (EURUSD 1.08, USDJPY 151)
    inverted: bool  # quoted as USD/xxx
    places: int
    volatility: float


PAIRS = (
    _Pair("EUR", 1.08, False, 4, 0.07),
    _Pair("GBP", 1.27, False, 4, 0.08),
    _Pair("JPY", 151.0, True, 2, 0.10),
    _Pair("CHF", 0.88, True, 4, 0.07),
)
# The walks start here and go forward a weekday at a time: a day's rate never depends on
# which day a replica started.
EPOCH = date(2010, 1, 4)
# A pull towards the pair's level per day, so rates stay plausible for decades.
FX_REVERSION = 1 / 250


class SimulatedRates:
    """Weekday closes of the four walked pairs and every cross between them and USD."""

    source = "mock"

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._walks: dict[str, dict[date, Decimal]] = {}
        self._through = EPOCH - timedelta(days=1)
        self._logs = {p.currency: math.log(p.level) for p in PAIRS}
        self._rngs = {p.currency: random.Random(f"{seed}:fx:{p.currency}") for p in PAIRS}
        for pair in PAIRS:
            self._walks[pair.currency] = {}

    def close(self, base: str, quote: str, day: date) -> tuple[date, Decimal]:
        """The close of `day` (the last weekday on or before it) and that weekday."""
        weekday = _weekday_on_or_before(day)
        self._walk_to(weekday)
        return weekday, self._cross(base, quote, weekday)

    def daily(self, base: str, quote: str, start: date, end: date) -> dict[date, Decimal]:
        self._walk_to(end)
        closes: dict[date, Decimal] = {}
        day = max(start, EPOCH)
        while day <= end:
            if day.weekday() < 5:
                closes[day] = self._cross(base, quote, day)
            day += timedelta(days=1)
        return closes

    def _walk_to(self, end: date) -> None:
        day = self._through + timedelta(days=1)
        while day <= end:
            if day.weekday() < 5:
                for pair in PAIRS:
                    anchor = math.log(pair.level)
                    sigma = pair.volatility / math.sqrt(252)
                    log_level = self._logs[pair.currency]
                    log_level += (
                        FX_REVERSION * (anchor - log_level)
                        + sigma * self._rngs[pair.currency].gauss()
                    )
                    self._logs[pair.currency] = log_level
                    step = Decimal(1).scaleb(-pair.places)
                    quoted = Decimal(str(math.exp(log_level))).quantize(step)
                    self._walks[pair.currency][day] = quoted
            day += timedelta(days=1)
        self._through = max(self._through, end)

    def _usd_per(self, currency: str, day: date) -> Decimal:
        """USD one unit of `currency` buys (exact for the walked pair's own quote)."""
        if currency == "USD":
            return ONE
        pair = next(p for p in PAIRS if p.currency == currency)
        level = self._walks[currency][day]
        return ONE / level if pair.inverted else level

    def _cross(self, base: str, quote: str, day: date) -> Decimal:
        if base == quote:
            return ONE
        # A walked pair is its own quote; anything else is derived and rounded once.
        for pair in PAIRS:
            own = (pair.currency, "USD") if not pair.inverted else ("USD", pair.currency)
            if (base, quote) == own:
                return self._walks[pair.currency][day]
        rate = self._usd_per(base, day) / self._usd_per(quote, day)
        digits = CROSS_DIGITS - rate.adjusted() - 1
        return rate.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_EVEN)


def _weekday_on_or_before(day: date) -> date:
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


@dataclass(frozen=True)
class TradeFx:
    """A trade as it was given: its trading currency, price and fees, and the rate into its
    portfolio's currency on its date (the book holds price and fees times `rate`)."""

    currency: str
    rate: Decimal
    local_price: Decimal
    local_fees: Decimal


@dataclass(frozen=True)
class Valuation:
    """A holding's price in its trading currency and today's rate into its portfolio's."""

    currency: str
    local_price: Decimal
    rate: Decimal
