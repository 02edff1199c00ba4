"""The days a report covers, as its request names them (`from`, `to`: UTC days, both included),
and the calendar rules reports share. Plain Python: no I/O, no framework."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from services.runtime.errors import InvalidArgument


@dataclass(frozen=True)
class Period:
    """The days a report covers, both included; None: unbounded on that side."""

    start: date | None = None
    end: date | None = None

    def __contains__(self, day: date) -> bool:
        return (self.start is None or day >= self.start) and (self.end is None or day <= self.end)


def period_of(start: str, end: str) -> Period:
    """The period a request names (`from`, `to`: YYYY-MM-DD or empty); InvalidArgument naming
    the field when a day does not exist or `from` comes after `to`."""
    period = Period(optional_day("from", start), optional_day("to", end))
    if period.start and period.end and period.start > period.end:
        raise InvalidArgument.field("from", "must not be after to")
    return period


def optional_day(field: str, raw: str) -> date | None:
    """The day `raw` names (YYYY-MM-DD), None when blank; InvalidArgument naming `field`."""
    if not raw.strip():
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise InvalidArgument.field(field, "must be a date such as 2026-12-04") from None


def anniversary(day: date) -> date:
    """The same day a year later (29 February: the 28th when the next year has none)."""
    try:
        return day.replace(year=day.year + 1)
    except ValueError:
        return day.replace(year=day.year + 1, day=28)
