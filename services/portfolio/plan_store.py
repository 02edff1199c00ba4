"""Loads and saves savings plans and their runs; hides SQLAlchemy from the rest.

A run is noted with `INSERT ... ON CONFLICT DO NOTHING` on its (plan, date) key, which says
whether it was the first: two jobs (or two leaders) trying one date both get an answer, and
only one row is there.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.orm import portfolios, savings_plan_runs, savings_plans, trades
from services.portfolio.plans import Frequency, Plan, PlanRun, RunStatus

_WITH_CURRENCY = select(savings_plans, portfolios.c.base_currency).join(
    portfolios, portfolios.c.id == savings_plans.c.portfolio_id
)


def _plan(row: Any) -> Plan:
    return Plan(
        id=row.id,
        user_id=row.user_id,
        portfolio_id=row.portfolio_id,
        symbol=row.symbol,
        amount=row.amount,
        every=Frequency(row.every),
        start_date=row.start_date,
        fractional=bool(row.fractional),
        paused=bool(row.paused),
        created_at=row.created_at,
        updated_at=row.updated_at,
        currency=row.base_currency,
    )


# A run with whether its trade is still there (a trade deleted since leaves the run as it was).
_RUNS_WITH_TRADES = select(savings_plan_runs, trades.c.id.label("kept_trade_id")).outerjoin(
    trades, trades.c.id == savings_plan_runs.c.trade_id
)


def _run(row: Any) -> PlanRun:
    kept = getattr(row, "kept_trade_id", row.trade_id)
    return PlanRun(
        plan_id=row.plan_id,
        day=row.run_date,
        status=RunStatus(row.status),
        ran_at=row.ran_at,
        trade_id=row.trade_id or "",
        reason=row.reason,
        message=row.message,
        quantity=row.quantity,
        price=row.price,
        trade_deleted=bool(row.trade_id) and kept is None,
    )


class PlanRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    # --- plans -----------------------------------------------------------------------------

    async def add(self, plan: Plan) -> None:
        await self._session.execute(
            insert(savings_plans).values(
                id=plan.id,
                user_id=plan.user_id,
                portfolio_id=plan.portfolio_id,
                symbol=plan.symbol,
                amount=plan.amount,
                every=plan.every.value,
                start_date=plan.start_date,
                fractional=plan.fractional,
                paused=plan.paused,
                created_at=plan.created_at,
                updated_at=plan.updated_at,
            )
        )

    async def get(self, plan_id: str, user_id: str | None = None) -> Plan | None:
        """The plan; with `user_id`, only that user's (another's is as absent as none)."""
        query = _WITH_CURRENCY.where(savings_plans.c.id == plan_id)
        if user_id is not None:
            query = query.where(savings_plans.c.user_id == user_id)
        row = (await self._session.execute(query)).first()
        return _plan(row) if row else None

    async def count(self, portfolio_id: str) -> int:
        query = select(func.count()).where(savings_plans.c.portfolio_id == portfolio_id)
        return int((await self._session.execute(query)).scalar_one())

    async def page(self, portfolio_id: str, *, offset: int, limit: int) -> list[Plan]:
        query = (
            _WITH_CURRENCY.where(savings_plans.c.portfolio_id == portfolio_id)
            .order_by(savings_plans.c.created_at, savings_plans.c.id)
            .offset(offset)
            .limit(limit)
        )
        return [_plan(r) for r in (await self._session.execute(query)).all()]

    async def after(self, plan_id: str, limit: int) -> list[Plan]:
        """Every user's plans in id order after `plan_id`, `limit` at most (the job's batches)."""
        query = (
            _WITH_CURRENCY.where(savings_plans.c.id > plan_id)
            .order_by(savings_plans.c.id)
            .limit(limit)
        )
        return [_plan(r) for r in (await self._session.execute(query)).all()]

    async def change(self, plan_id: str, **values: Any) -> None:
        await self._session.execute(
            update(savings_plans).where(savings_plans.c.id == plan_id).values(**values)
        )

    async def delete(self, plan_id: str) -> None:
        # Its runs go with it (ON DELETE CASCADE, and explicitly for a database without it).
        await self._session.execute(
            delete(savings_plan_runs).where(savings_plan_runs.c.plan_id == plan_id)
        )
        await self._session.execute(delete(savings_plans).where(savings_plans.c.id == plan_id))

    # --- runs --------------------------------------------------------------------------------

    async def note_run(self, run: PlanRun) -> bool:
        """Note what a run date did; False when it was noted already (by whoever came first)."""
        dialect = self._session.bind.dialect.name if self._session.bind else ""
        module: Any = postgresql if dialect == "postgresql" else sqlite
        statement = (
            module.insert(savings_plan_runs)
            .values(
                plan_id=run.plan_id,
                run_date=run.day,
                status=run.status.value,
                trade_id=run.trade_id or None,
                reason=run.reason,
                message=run.message,
                quantity=run.quantity,
                price=run.price,
                ran_at=run.ran_at,
            )
            .on_conflict_do_nothing()
            .returning(savings_plan_runs.c.plan_id)
        )
        # RETURNING, not rowcount: a driver may not report a row count for this statement.
        return (await self._session.execute(statement)).first() is not None

    async def last_runs(self, plan_ids: Sequence[str]) -> dict[str, PlanRun]:
        """Each plan's latest run (plans without one are left out)."""
        if not plan_ids:
            return {}
        latest = (
            select(
                savings_plan_runs.c.plan_id,
                func.max(savings_plan_runs.c.run_date).label("run_date"),
            )
            .where(savings_plan_runs.c.plan_id.in_(plan_ids))
            .group_by(savings_plan_runs.c.plan_id)
            .subquery()
        )
        query = _RUNS_WITH_TRADES.join(
            latest,
            (latest.c.plan_id == savings_plan_runs.c.plan_id)
            & (latest.c.run_date == savings_plan_runs.c.run_date),
        )
        return {r.plan_id: _run(r) for r in (await self._session.execute(query)).all()}

    async def runs(self, plan_id: str, *, offset: int, limit: int) -> tuple[list[PlanRun], int]:
        """A page of the plan's runs, newest first, and how many it has."""
        where = savings_plan_runs.c.plan_id == plan_id
        total = (await self._session.execute(select(func.count()).where(where))).scalar_one()
        query = (
            _RUNS_WITH_TRADES.where(where)
            .order_by(savings_plan_runs.c.run_date.desc())
            .offset(offset)
            .limit(limit)
        )
        return [_run(r) for r in (await self._session.execute(query)).all()], int(total)

    async def run_on(self, plan_id: str, day: date) -> PlanRun | None:
        query = select(savings_plan_runs).where(
            savings_plan_runs.c.plan_id == plan_id, savings_plan_runs.c.run_date == day
        )
        row = (await self._session.execute(query)).first()
        return _run(row) if row else None
