"""UTC days for tests that compare a day they compute with one a server computed at another
moment. CI may run across midnight UTC (a run takes about 25 minutes), and a server's "today"
(the token budget's day, the last day of a performance report, today's close, today's rate) is
then not the test's.

Where a server takes a clock, a test holds it; where it answers with its day, the test expects
that day. Otherwise a test names every day it may have seen (`utc_today()` read before and
after), or, where the whole outcome hangs on the day (a budget renewed at midnight, a series
ending on another day), it is `one_utc_day`: a failure when midnight UTC passed during it is a
skip, since it says nothing about the behaviour; a failure within one day stands.

Beside them, the moments of a day tests date trades at: `noon` and `stamp` (15:00) as the
Timestamp a request carries, `at` an hour as a datetime; and `timestamp`, any moment as that
Timestamp.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time
from typing import ParamSpec, overload

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

P = ParamSpec("P")


def utc_today() -> date:
    return datetime.now(UTC).date()


def midnight_of(day: date) -> datetime:
    """The midnight UTC that begins `day`."""
    return datetime.combine(day, time(), UTC)


def timestamp(moment: datetime) -> Timestamp:
    made = Timestamp()
    made.FromDatetime(moment)
    return made


def noon(day: date) -> Timestamp:
    return timestamp(at(day, 12))


def stamp(day: date) -> Timestamp:
    return timestamp(at(day))


def at(day: date, hour: int = 15) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


@overload
def one_utc_day(test: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]: ...


@overload
def one_utc_day(test: Callable[P, None]) -> Callable[P, None]: ...


def one_utc_day(
    test: Callable[P, Awaitable[None]] | Callable[P, None],
) -> Callable[P, Awaitable[None]] | Callable[P, None]:
    """The `test` (async or not) runs within one UTC day: when it fails and midnight UTC passed
    while it ran, it is skipped (the servers' day may have changed under it: only then)."""

    def skip_if_the_day_changed(began: date, failure: Exception) -> None:
        if utc_today() != began:
            pytest.skip(
                f"midnight UTC passed during the test ({began} to {utc_today()}), which "
                f"depends on the day the servers saw: {failure!r}"
            )

    if inspect.iscoroutinefunction(test):
        run = test

        @functools.wraps(test)
        async def within_one_day(*args: P.args, **kwargs: P.kwargs) -> None:
            began = utc_today()
            try:
                await run(*args, **kwargs)
            except Exception as failure:
                skip_if_the_day_changed(began, failure)
                raise

        return within_one_day

    @functools.wraps(test)
    def within_one_day_sync(*args: P.args, **kwargs: P.kwargs) -> None:
        began = utc_today()
        try:
            test(*args, **kwargs)
        except Exception as failure:
            skip_if_the_day_changed(began, failure)
            raise

    return within_one_day_sync
