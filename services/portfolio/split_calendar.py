"""The market's split calendar: which symbols split on which days, and by what ratio, as a
source states them (the simulated market's schedule, Alpha Vantage's `SPLITS`).

A ratio is two whole numbers, new shares for old (`(4, 1)` a 4-for-1, `(1, 2)` a 1-for-2
reverse split), as CreateSplit takes them. A provider states a split as one decimal factor
(`"4.0000"`, `"0.5000"`, `"1.5000"`), rounded to four places; `ratio_of_factor` finds the
ratio of small terms it rounds from, and refuses a factor no such ratio explains.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

log = logging.getLogger(__name__)

# (numerator, denominator): `numerator` new shares for every `denominator` old ones.
SplitRatio = tuple[int, int]
# symbol -> effective date -> ratio.
SplitCalendar = dict[str, dict[date, SplitRatio]]

# A factor's smaller term is at most this (3-for-2, 5-for-4, 2-for-3; a 1-for-N reverse split
# is found from its reciprocal); its larger one at most MAX_TERM (splits.py's own bound).
SMALL_TERM = 10
MAX_TERM = 1_000_000
# Providers print four places: the ratio found must round to the factor given.
FACTOR_PLACES = 4
_HALF_UNIT = Fraction(1, 2 * 10**FACTOR_PLACES)
_MAX_FACTOR_TEXT = 32


def ratio_of_factor(text: str) -> SplitRatio | None:
    """The ratio a provider's decimal factor states (`"4.0000"` -> (4, 1), `"0.5000"` ->
    (1, 2), `"1.5000"` -> (3, 2), `"0.3333"` -> (1, 3)); None for anything that is not one:
    not a number, zero or below, 1 (no split), or no ratio of small terms rounds to it."""
    if len(text) > _MAX_FACTOR_TEXT:
        return None
    try:
        factor = Decimal(text.strip())
    except InvalidOperation:
        return None
    if not factor.is_finite() or factor <= 0 or factor == 1:
        return None
    exact = Fraction(factor)
    # A reverse split is stated by its reciprocal's terms: 0.0050 is 1-for-200.
    reverse = exact < 1
    near = (1 / exact if reverse else exact).limit_denominator(SMALL_TERM)
    new, old = (near.denominator, near.numerator) if reverse else (near.numerator, near.denominator)
    if not (1 <= new <= MAX_TERM and 1 <= old <= MAX_TERM) or new == old:
        return None
    if abs(Fraction(new, old) - exact) > _HALF_UNIT:
        return None
    return new, old


def parse_splits(symbol: str, rows: Any) -> dict[date, SplitRatio]:
    """Alpha Vantage's `SPLITS` rows (`[{"effective_date": "2020-08-31", "split_factor":
    "4.0000"}]`) as effective date -> ratio; a row without a day or a factor that states a
    split is skipped (logged), the rest kept."""
    found: dict[date, SplitRatio] = {}
    if not isinstance(rows, list):
        return found
    for row in rows:
        day, ratio = _row(row)
        if day is None or ratio is None:
            log.info("split row skipped: unreadable", extra={"symbol": symbol})
            continue
        found[day] = ratio
    return found


def _row(row: Any) -> tuple[date | None, SplitRatio | None]:
    if not isinstance(row, dict):
        return None, None
    raw_day, raw_factor = row.get("effective_date"), row.get("split_factor")
    if not isinstance(raw_day, str) or not isinstance(raw_factor, str | int | float):
        return None, None
    try:
        day = date.fromisoformat(raw_day.strip()[:10])
    except ValueError:
        return None, None
    return day, ratio_of_factor(str(raw_factor))


def within(
    calendar: Mapping[str, Mapping[date, SplitRatio]], start: date, end: date
) -> SplitCalendar:
    """The splits from `start` to `end` (both included), symbols without one left out."""
    found: SplitCalendar = {}
    for symbol, days in calendar.items():
        kept = {day: ratio for day, ratio in days.items() if start <= day <= end}
        if kept:
            found[symbol] = dict(sorted(kept.items()))
    return found


def encode(days: Mapping[date, SplitRatio]) -> list[list[Any]]:
    """As JSON holds them (a cache entry): `[["2020-08-31", 4, 1], ...]`."""
    return [[day.isoformat(), new, old] for day, (new, old) in sorted(days.items())]


def decode(rows: Iterable[Any]) -> dict[date, SplitRatio]:
    return {date.fromisoformat(day): (int(new), int(old)) for day, new, old in rows}
