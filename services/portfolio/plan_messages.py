"""Savings plans as protobuf messages, and the plan enums of the wire mapped to the domain's."""

from __future__ import annotations

from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.plan_desk import ShownPlan
from services.portfolio.plans import Frequency, PlanRun, RunStatus, next_run_date
from services.portfolio.wire_numbers import present_money, present_price, present_quantity
from services.runtime.timestamps import timestamp

FREQUENCY_TO_PROTO = {
    Frequency.WEEK: portfolio_pb2.PLAN_FREQUENCY_WEEK,
    Frequency.MONTH: portfolio_pb2.PLAN_FREQUENCY_MONTH,
}
PROTO_TO_FREQUENCY = {v: k for k, v in FREQUENCY_TO_PROTO.items()}
RUN_STATUS_TO_PROTO = {
    RunStatus.DONE: portfolio_pb2.PLAN_RUN_STATUS_DONE,
    RunStatus.SKIPPED: portfolio_pb2.PLAN_RUN_STATUS_SKIPPED,
}


def plan_message(shown: ShownPlan) -> portfolio_pb2.Plan:
    plan, last = shown.plan, shown.last_run
    upcoming = next_run_date(plan, last.day if last else None)
    message = portfolio_pb2.Plan(
        id=plan.id,
        portfolio_id=plan.portfolio_id,
        symbol=plan.symbol,
        amount=present_money(plan.amount),
        currency=plan.currency,
        every=FREQUENCY_TO_PROTO[plan.every],
        start_date=plan.start_date.isoformat(),
        fractional=plan.fractional,
        paused=plan.paused,
        next_run_date=upcoming.isoformat() if upcoming else "",
        created_at=timestamp(plan.created_at),
        updated_at=timestamp(plan.updated_at),
    )
    if last is not None:
        message.last_run.CopyFrom(run_message(last))
    return message


def run_message(run: PlanRun) -> portfolio_pb2.PlanRun:
    return portfolio_pb2.PlanRun(
        plan_id=run.plan_id,
        date=run.day.isoformat(),
        status=RUN_STATUS_TO_PROTO[run.status],
        trade_id=run.trade_id,
        reason=run.reason,
        message=run.message,
        quantity="" if run.quantity is None else present_quantity(run.quantity),
        price="" if run.price is None else present_price(run.price),
        ran_at=timestamp(run.ran_at),
        trade_deleted=run.trade_deleted,
    )
