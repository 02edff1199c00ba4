"""Savings plans of paper portfolios: the record, the rules of its fields, its schedule and what
each due run date does. Plain Python: no I/O, no framework.

Plans, stated once
------------------
* A plan buys `amount` (in its portfolio's currency) of one symbol at the market price on each
  run date: `start_date`, then every week (same weekday) or every month on the start date's day
  of the month, the month's last day when it has fewer (Jan 31 -> Feb 28 or 29 -> Mar 31).
* Fractional plans buy amount / price shares, rounded down to QUANTITY_PLACES; whole-share
  plans the whole shares it pays for. What is left of the amount stays cash.
* Every run date gets exactly one run: DONE with its trade, or SKIPPED with a reason. The runs
  are the plan's cursor: the dates after its latest run, up to today, are the ones due.
* A due date before the day the plan was created is skipped (BEFORE_PLAN): a plan does not buy
  the past at today's price. One more than CATCH_UP_DAYS days late (the service was down) is
  skipped too (MISSED); a later one runs at the next check. A paused plan's due dates are
  skipped (PAUSED), so resuming it does not catch up.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Context, Decimal
from enum import StrEnum

from services.portfolio.domain import normalize_symbol
from services.portfolio.wire_numbers import MONEY_PLACES, QUANTITY_PLACES, parse_decimal
from services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound

# Per portfolio: more is a runaway client, not a savings plan.
MAX_PLANS = 50
# A run this many days late still buys; later it is skipped as MISSED.
CATCH_UP_DAYS = 3
# How far from today a plan's start date may be, either way.
START_WITHIN = timedelta(days=366)

BEFORE_PLAN = "BEFORE_PLAN"
PAUSED = "PAUSED"
MISSED = "MISSED"
AMOUNT_BELOW_ONE_SHARE = "AMOUNT_BELOW_ONE_SHARE"


class Frequency(StrEnum):
    WEEK = "week"
    MONTH = "month"


class RunStatus(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Plan:
    id: str
    user_id: str
    portfolio_id: str
    symbol: str
    amount: Decimal
    every: Frequency
    start_date: date
    fractional: bool
    paused: bool
    created_at: datetime
    updated_at: datetime
    currency: str = ""  # the portfolio's, as read with the plan

    @property
    def created_on(self) -> date:
        return self.created_at.astimezone(UTC).date()

    @property
    def notes(self) -> str:
        """What each of its trades says (ListTrades shows which plan bought)."""
        return f"plan {self.id}"


@dataclass(frozen=True)
class PlanRun:
    plan_id: str
    day: date
    status: RunStatus
    ran_at: datetime
    trade_id: str = ""
    reason: str = ""
    message: str = ""
    quantity: Decimal | None = None
    price: Decimal | None = None
    trade_deleted: bool = False  # its trade (DONE) was deleted since


@dataclass(frozen=True)
class Skip:
    reason: str
    message: str


@dataclass(frozen=True)
class Due:
    """A run date to act on now: buy (`skip` None), or record it skipped."""

    day: date
    skip: Skip | None = None


# --- the schedule ------------------------------------------------------------------------------


def run_date(start: date, every: Frequency, n: int) -> date:
    """The plan's n-th run date (0: the start date)."""
    if every is Frequency.WEEK:
        return start + timedelta(weeks=n)
    months = start.month - 1 + n
    year, month = start.year + months // 12, months % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def run_dates(start: date, every: Frequency, after: date | None, through: date) -> list[date]:
    """The run dates after `after` (None: from the start) up to `through`, both UTC days."""
    n = _first_index_after(start, every, after)
    found: list[date] = []
    while (day := run_date(start, every, n)) <= through:
        found.append(day)
        n += 1
    return found


def next_run_date(plan: Plan, last_run: date | None) -> date | None:
    """The next date the plan buys on: its first run date after its latest run that is not
    before its creation; None while it is paused."""
    if plan.paused:
        return None
    eve = plan.created_on - timedelta(days=1)
    after = eve if last_run is None else max(last_run, eve)
    return run_date(
        plan.start_date, plan.every, _first_index_after(plan.start_date, plan.every, after)
    )


def _first_index_after(start: date, every: Frequency, after: date | None) -> int:
    if after is None or after < start:
        return 0
    if every is Frequency.WEEK:
        return (after - start).days // 7 + 1
    # An estimate from the months between, moved on past any clamped date not after `after`.
    n = max(0, (after.year - start.year) * 12 + after.month - start.month)
    while run_date(start, every, n) <= after:
        n += 1
    return n


def due_runs(plan: Plan, last_run: date | None, today: date) -> list[Due]:
    """What the plan's run dates after its latest run, up to `today`, do now, oldest first."""
    due: list[Due] = []
    for day in run_dates(plan.start_date, plan.every, last_run, today):
        if day < plan.created_on:
            skip = Skip(
                BEFORE_PLAN,
                f"{day.isoformat()} is before the plan was created"
                f" ({plan.created_on.isoformat()}): past dates are not bought at today's price",
            )
        elif plan.paused:
            skip = Skip(PAUSED, "the plan was paused")
        elif (today - day).days > CATCH_UP_DAYS:
            skip = Skip(
                MISSED,
                f"the run was not made on {day.isoformat()} (the service was down, or the"
                f" market could not price {plan.symbol}) and is more than {CATCH_UP_DAYS} days"
                " late",
            )
        else:
            due.append(Due(day))
            continue
        due.append(Due(day, skip))
    return due


# --- sizing --------------------------------------------------------------------------------------

_SIZING = Context(prec=60)


def shares_for(amount: Decimal, price: Decimal, *, fractional: bool) -> Decimal:
    """The shares `amount` buys at `price` (both in one currency), rounded down: to
    QUANTITY_PLACES, or to whole shares. FailedPrecondition when that is none."""
    places = QUANTITY_PLACES if fractional else 0
    quantity = _SIZING.divide(amount, price).quantize(
        Decimal(1).scaleb(-places), rounding=ROUND_DOWN, context=_SIZING
    )
    if quantity <= 0:
        smallest = "one share" if not fractional else f"{Decimal(1).scaleb(-places):f} share"
        raise FailedPrecondition(
            f"{amount:f} does not buy {smallest} at {price:f}",
            reason=AMOUNT_BELOW_ONE_SHARE,
        )
    return quantity


# --- input -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanDraft:
    """A plan as the caller sent it: wire strings, checked by `parse_plan`."""

    portfolio_id: str
    symbol: str
    amount: str
    every: Frequency | None
    start_date: str
    fractional: bool = True
    paused: bool = False


def parse_amount(raw: str) -> Decimal:
    amount = parse_decimal("amount", raw, places=MONEY_PLACES)
    if amount <= 0:
        raise InvalidArgument.field("amount", "must be greater than zero")
    return amount


def parse_plan(draft: PlanDraft, *, user_id: str, id: str, now: datetime) -> Plan:
    """A plan from wire strings, or InvalidArgument listing every field (as the wire names
    them) that breaks a rule."""
    violations: list[tuple[str, str]] = []
    symbol = ""
    try:
        symbol = normalize_symbol(draft.symbol)
    except InvalidArgument as problem:
        violations.extend(problem.fields)
    amount = None
    try:
        amount = parse_amount(draft.amount)
    except InvalidArgument as problem:
        violations.extend(problem.fields)
    if draft.every is None:
        violations.append(("every", "must be week or month"))
    start = None
    today = now.astimezone(UTC).date()
    try:
        start = date.fromisoformat(draft.start_date.strip())
    except ValueError:
        violations.append(("startDate", "must be a date such as 2026-12-04"))
    if start is not None and abs(start - today) > START_WITHIN:
        violations.append(("startDate", "must be within a year of today"))
    if violations or amount is None or start is None or draft.every is None:
        message = "invalid plan: " + "; ".join(f"{f} {d}" for f, d in violations)
        raise InvalidArgument(message, fields=violations)
    return Plan(
        id=id,
        user_id=user_id,
        portfolio_id=draft.portfolio_id,
        symbol=symbol,
        amount=amount,
        every=draft.every,
        start_date=start,
        fractional=draft.fractional,
        paused=draft.paused,
        created_at=now,
        updated_at=now,
    )


# --- errors ------------------------------------------------------------------------------------


def plan_not_found(plan_id: str) -> NotFound:
    """Also the answer for another user's plan: its existence is not disclosed."""
    return NotFound(f"plan {plan_id.strip()} not found", reason="PLAN_NOT_FOUND")


def needs_paper() -> FailedPrecondition:
    return FailedPrecondition(
        "savings plans are for paper portfolios: a plan spends the portfolio's paper cash, and"
        " a tracking portfolio records real trades by hand",
        reason="PLANS_NEED_PAPER_PORTFOLIO",
    )


def too_many_plans() -> FailedPrecondition:
    return FailedPrecondition(
        f"a portfolio holds at most {MAX_PLANS} savings plans: delete one first",
        reason="TOO_MANY_PLANS",
    )
