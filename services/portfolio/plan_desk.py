"""Savings plans as use cases for their owner: creating, listing, reading, changing (pause,
resume, amount) and deleting them, and listing their runs. The runs themselves are made by the
market leader's job (plan_runner.py).

Every write of a plan first locks its portfolio row, as every trade does (trades.py): a run
holds that lock while it checks the plan and records its trade, so a pause, an amount change or
a delete is either before the run (which then sees it) or after it, never half-way.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.plan_store import PlanRepository
from services.portfolio.plans import (
    MAX_PLANS,
    Plan,
    PlanDraft,
    PlanRun,
    needs_paper,
    parse_amount,
    parse_plan,
    plan_not_found,
    too_many_plans,
)
from services.portfolio.records import portfolio_not_found, require_portfolio_id
from services.portfolio.repository import PortfolioRepository
from services.portfolio.trades import Trades
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.pagination import Page

# Called inside the transaction that stores a new plan, just before it commits (an idempotency
# key's stored answer).
SettlePlan = Callable[[AsyncSession, "ShownPlan"], Awaitable[None]]


@dataclass(frozen=True)
class ShownPlan:
    """A plan as its owner sees it: with its latest run, if any."""

    plan: Plan
    last_run: PlanRun | None = None


@dataclass(frozen=True)
class PlanChanges:
    """What UpdatePlan changes (None: as it is)."""

    amount: str | None = None
    fractional: bool | None = None
    paused: bool | None = None


class Plans:
    def __init__(
        self, db: Database, trades: Trades, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._db = db
        self._trades = trades
        self._clock = clock

    async def create(
        self, user_id: str, draft: PlanDraft, *, settle: SettlePlan | None = None
    ) -> ShownPlan:
        portfolio_id = require_portfolio_id(draft.portfolio_id)
        plan = parse_plan(
            replace(draft, portfolio_id=portfolio_id),
            user_id=user_id,
            id=str(uuid.uuid4()),
            now=self._clock(),
        )
        await self._trades.check_tradable(plan.symbol)
        async with self._db.transaction() as session:
            # Locked: two creates at once cannot both see room for the 50th plan.
            portfolios = PortfolioRepository(session)
            portfolio = await portfolios.lock_paper(portfolio_id, user_id, needs_paper)
            plans = PlanRepository(session)
            if await plans.count(portfolio_id) >= MAX_PLANS:
                raise too_many_plans()
            await plans.add(plan)
            shown = ShownPlan(replace(plan, currency=portfolio.base_currency))
            if settle is not None:
                await settle(session, shown)
        return shown

    async def get(self, user_id: str, plan_id: str) -> ShownPlan:
        async with self._db.reading() as session:
            plans = PlanRepository(session)
            plan = await plans.get(plan_id.strip(), user_id)
            if plan is None:
                raise plan_not_found(plan_id)
            last = await plans.last_runs([plan.id])
        return ShownPlan(plan, last.get(plan.id))

    async def page(
        self, user_id: str, portfolio_id: str, page: Page
    ) -> tuple[list[ShownPlan], int]:
        portfolio_id = require_portfolio_id(portfolio_id)
        async with self._db.reading() as session:
            if await PortfolioRepository(session).get(portfolio_id, user_id) is None:
                raise portfolio_not_found(portfolio_id)
            plans = PlanRepository(session)
            found = await plans.page(portfolio_id, offset=page.offset, limit=page.limit)
            total = await plans.count(portfolio_id)
            last = await plans.last_runs([p.id for p in found])
        return [ShownPlan(p, last.get(p.id)) for p in found], total

    async def update(self, user_id: str, plan_id: str, changes: PlanChanges) -> ShownPlan:
        values: dict[str, Any] = {}
        if changes.amount is not None:
            values["amount"] = parse_amount(changes.amount)
        if changes.fractional is not None:
            values["fractional"] = changes.fractional
        if changes.paused is not None:
            values["paused"] = changes.paused
        async with self._db.transaction() as session:
            plan = await self._locked(session, user_id, plan_id)
            plans = PlanRepository(session)
            if values:
                values["updated_at"] = self._clock()
                await plans.change(plan.id, **values)
            changed = await plans.get(plan.id)
            assert changed is not None  # the portfolio's lock keeps it
            last = await plans.last_runs([plan.id])
        return ShownPlan(changed, last.get(plan.id))

    async def delete(self, user_id: str, plan_id: str) -> None:
        async with self._db.transaction() as session:
            plan = await self._locked(session, user_id, plan_id)
            await PlanRepository(session).delete(plan.id)

    async def runs(self, user_id: str, plan_id: str, page: Page) -> tuple[list[PlanRun], int]:
        async with self._db.reading() as session:
            plans = PlanRepository(session)
            plan = await plans.get(plan_id.strip(), user_id)
            if plan is None:
                raise plan_not_found(plan_id)
            return await plans.runs(plan.id, offset=page.offset, limit=page.limit)

    async def _locked(self, session: AsyncSession, user_id: str, plan_id: str) -> Plan:
        """The user's plan, its portfolio locked (see the module's docstring)."""
        plans = PlanRepository(session)
        plan = await plans.get(plan_id.strip(), user_id)
        if plan is None:
            raise plan_not_found(plan_id)
        await PortfolioRepository(session).lock(plan.portfolio_id, user_id)
        # Read again under the lock: a delete that held it first leaves nothing to change.
        locked = await plans.get(plan.id, user_id)
        if locked is None:
            raise plan_not_found(plan_id)
        return locked
