"""The savings-plan schedule (services/portfolio/plans.py): run dates every week or month,
month ends clamped (Jan 31 -> Feb 28/29 -> Mar 31), leap years, and what each due date does:
buy, or skip before the plan existed, while paused, or too late."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.portfolio.plans import (
    AMOUNT_BELOW_ONE_SHARE,
    BEFORE_PLAN,
    MISSED,
    PAUSED,
    Due,
    Frequency,
    Plan,
    PlanDraft,
    due_runs,
    next_run_date,
    parse_plan,
    run_date,
    run_dates,
    shares_for,
)
from services.runtime.errors import FailedPrecondition, InvalidArgument

WEEK, MONTH = Frequency.WEEK, Frequency.MONTH
D = Decimal


def plan(start: date, every: Frequency = MONTH, *, created: date, paused: bool = False) -> Plan:
    at = datetime(created.year, created.month, created.day, 9, tzinfo=UTC)
    return Plan("p-1", "u-1", "pf-1", "AAPL", D(100), every, start, True, paused, at, at)


def test_a_monthly_plan_from_the_31st_runs_on_each_months_last_day_when_shorter() -> None:
    dates = run_dates(date(2025, 1, 31), MONTH, None, date(2025, 12, 31))
    assert dates == [
        date(2025, 1, 31),
        date(2025, 2, 28),
        date(2025, 3, 31),
        date(2025, 4, 30),
        date(2025, 5, 31),
        date(2025, 6, 30),
        date(2025, 7, 31),
        date(2025, 8, 31),
        date(2025, 9, 30),
        date(2025, 10, 31),
        date(2025, 11, 30),
        date(2025, 12, 31),
    ]


def test_february_has_29_days_in_a_leap_year_and_the_30th_comes_back_after_it() -> None:
    assert run_dates(date(2024, 1, 30), MONTH, None, date(2024, 3, 31)) == [
        date(2024, 1, 30),
        date(2024, 2, 29),
        date(2024, 3, 30),
    ]
    assert run_dates(date(2023, 12, 31), MONTH, None, date(2024, 3, 1)) == [
        date(2023, 12, 31),
        date(2024, 1, 31),
        date(2024, 2, 29),
    ]
    # A plan started on Feb 29 runs on the 29th where there is one, the 28th otherwise.
    assert [run_date(date(2024, 2, 29), MONTH, n) for n in (1, 12, 48)] == [
        date(2024, 3, 29),
        date(2025, 2, 28),
        date(2028, 2, 29),
    ]


def test_a_weekly_plan_runs_every_seven_days_across_month_and_year_ends() -> None:
    assert run_dates(date(2025, 12, 17), WEEK, None, date(2026, 1, 14)) == [
        date(2025, 12, 17),
        date(2025, 12, 24),
        date(2025, 12, 31),
        date(2026, 1, 7),
        date(2026, 1, 14),
    ]
    # After a given run: only the later ones.
    assert run_dates(date(2025, 12, 17), WEEK, date(2025, 12, 31), date(2026, 1, 13)) == [
        date(2026, 1, 7)
    ]


def test_the_dates_after_a_clamped_run_start_from_the_next_month() -> None:
    assert run_dates(date(2025, 1, 31), MONTH, date(2025, 2, 28), date(2025, 4, 30)) == [
        date(2025, 3, 31),
        date(2025, 4, 30),
    ]
    assert run_dates(date(2025, 1, 31), MONTH, date(2025, 2, 27), date(2025, 2, 28)) == [
        date(2025, 2, 28)
    ]
    assert run_dates(date(2025, 6, 1), MONTH, None, date(2025, 5, 31)) == []


@given(
    start=st.dates(min_value=date(1990, 1, 1), max_value=date(2090, 12, 31)),
    n=st.integers(min_value=0, max_value=400),
    every=st.sampled_from(list(Frequency)),
)
def test_run_dates_rise_and_a_monthly_one_keeps_its_day_or_ends_its_month(
    start: date, n: int, every: Frequency
) -> None:
    day, following = run_date(start, every, n), run_date(start, every, n + 1)
    assert following > day
    if every is WEEK:
        assert (following - day).days == 7
    else:
        last_day = calendar.monthrange(day.year, day.month)[1]
        assert day.day == start.day or (day.day < start.day and day.day == last_day)
    # Listing from the start reaches exactly the same date.
    assert run_dates(start, every, None, day)[-1] == day
    assert run_dates(start, every, day, following) == [following]


def test_due_dates_before_the_plans_creation_are_skipped_not_bought_at_todays_price() -> None:
    created = date(2026, 3, 15)
    due = due_runs(plan(date(2026, 1, 10), created=created), None, created)
    assert [(d.day, d.skip.reason if d.skip else None) for d in due] == [
        (date(2026, 1, 10), BEFORE_PLAN),
        (date(2026, 2, 10), BEFORE_PLAN),
        (date(2026, 3, 10), BEFORE_PLAN),
    ]
    assert due[0].skip is not None and "before the plan was created" in due[0].skip.message
    # Started on its creation day: that day buys.
    assert due_runs(plan(created, created=created), None, created) == [Due(created)]


def test_a_run_up_to_three_days_late_buys_once_and_later_ones_are_missed() -> None:
    p = plan(date(2026, 1, 5), WEEK, created=date(2026, 1, 1))
    # Down from Jan 4 to Jan 23: the 5th, the 12th and the 19th (4 days late) are skipped; a
    # check on the 22nd (3 days late) buys the 19th.
    due = due_runs(p, None, date(2026, 1, 23))
    assert [(d.day, d.skip.reason if d.skip else None) for d in due] == [
        (date(2026, 1, 5), MISSED),
        (date(2026, 1, 12), MISSED),
        (date(2026, 1, 19), MISSED),
    ]
    assert due_runs(p, date(2026, 1, 12), date(2026, 1, 22)) == [Due(date(2026, 1, 19))]


def test_a_paused_plans_due_dates_are_skipped_so_resuming_does_not_catch_up() -> None:
    p = plan(date(2026, 1, 5), WEEK, created=date(2026, 1, 1), paused=True)
    due = due_runs(p, date(2026, 1, 5), date(2026, 1, 12))
    assert [(d.day, d.skip.reason if d.skip else None) for d in due] == [
        (date(2026, 1, 12), PAUSED)
    ]
    assert next_run_date(p, date(2026, 1, 12)) is None


def test_the_next_run_date_follows_the_latest_run_and_never_precedes_the_creation() -> None:
    p = plan(date(2026, 1, 31), created=date(2026, 1, 20))
    assert next_run_date(p, None) == date(2026, 1, 31)
    assert next_run_date(p, date(2026, 1, 31)) == date(2026, 2, 28)
    late = plan(date(2026, 1, 31), created=date(2026, 3, 5))
    assert next_run_date(late, None) == date(2026, 3, 31)


def test_shares_for_an_amount_round_down_to_8_places_or_to_whole_shares() -> None:
    assert shares_for(D(100), D(3), fractional=True) == D("33.33333333")
    assert shares_for(D(100), D(30), fractional=False) == D(3)
    assert shares_for(D(100), D(100), fractional=False) == D(1)
    with pytest.raises(FailedPrecondition) as refused:
        shares_for(D(50), D(187.5), fractional=False)
    assert refused.value.reason == AMOUNT_BELOW_ONE_SHARE


def test_a_bad_plan_names_every_field_it_breaks() -> None:
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    draft = PlanDraft("pf-1", "no good", "0", None, "2026-02-30")
    with pytest.raises(InvalidArgument) as bad:
        parse_plan(draft, user_id="u-1", id="p-1", now=now)
    assert sorted(f for f, _ in bad.value.fields) == ["amount", "every", "startDate", "symbol"]
    far = PlanDraft("pf-1", "aapl", "100", MONTH, "2028-01-01")
    with pytest.raises(InvalidArgument) as bad:
        parse_plan(far, user_id="u-1", id="p-1", now=now)
    assert bad.value.fields == [("startDate", "must be within a year of today")]
    ok = parse_plan(
        PlanDraft("pf-1", " aapl ", "250.5", WEEK, "2026-12-07"), user_id="u-1", id="p", now=now
    )
    assert (ok.symbol, ok.amount, ok.start_date, ok.fractional) == (
        "AAPL",
        D("250.5"),
        date(2026, 12, 7),
        True,
    )
