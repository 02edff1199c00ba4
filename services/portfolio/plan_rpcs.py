"""The savings-plan RPCs of PortfolioService (a mixin of the servicer): request -> plan_desk.py
-> response. CreatePlan is idempotent with an `Idempotency-Key`: the stored answer commits in
the plan's own transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.plan_desk import PlanChanges, ShownPlan
from services.portfolio.plan_messages import PROTO_TO_FREQUENCY, plan_message, run_message
from services.portfolio.plans import PlanDraft
from services.runtime.interceptors import require_identity
from services.runtime.pagination import page_of

if TYPE_CHECKING:
    from services.portfolio.servicer import UseCases


class PlanRpcs:
    _cases: UseCases

    async def ListPlans(
        self, request: portfolio_pb2.ListPlansRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.ListPlansResponse:
        page = page_of(request.page, request.limit)
        found, total = await self._cases.plans.page(
            require_identity().user_id, request.portfolio_id, page
        )
        return portfolio_pb2.ListPlansResponse(
            plans=[plan_message(p) for p in found], pagination=page.describe(total)
        )

    async def CreatePlan(
        self, request: portfolio_pb2.CreatePlanRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.CreatePlanResponse:
        draft = PlanDraft(
            portfolio_id=request.portfolio_id,
            symbol=request.symbol,
            amount=request.amount,
            every=PROTO_TO_FREQUENCY.get(request.every),
            start_date=request.start_date,
            fractional=request.fractional if request.HasField("fractional") else True,
            paused=request.paused,
        )
        user_id = require_identity().user_id

        def respond(shown: ShownPlan) -> portfolio_pb2.CreatePlanResponse:
            return portfolio_pb2.CreatePlanResponse(plan=plan_message(shown))

        async def create() -> portfolio_pb2.CreatePlanResponse:
            settle = self._cases.idempotency.settling(respond)
            return respond(await self._cases.plans.create(user_id, draft, settle=settle))

        return await self._cases.idempotency.run(request, portfolio_pb2.CreatePlanResponse, create)

    async def GetPlan(
        self, request: portfolio_pb2.GetPlanRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetPlanResponse:
        shown = await self._cases.plans.get(require_identity().user_id, request.id)
        return portfolio_pb2.GetPlanResponse(plan=plan_message(shown))

    async def UpdatePlan(
        self, request: portfolio_pb2.UpdatePlanRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.UpdatePlanResponse:
        changes = PlanChanges(
            amount=request.amount if request.HasField("amount") else None,
            fractional=request.fractional if request.HasField("fractional") else None,
            paused=request.paused if request.HasField("paused") else None,
        )
        shown = await self._cases.plans.update(require_identity().user_id, request.id, changes)
        return portfolio_pb2.UpdatePlanResponse(plan=plan_message(shown))

    async def DeletePlan(
        self, request: portfolio_pb2.DeletePlanRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.DeletePlanResponse:
        await self._cases.plans.delete(require_identity().user_id, request.id)
        return portfolio_pb2.DeletePlanResponse()

    async def ListPlanRuns(
        self, request: portfolio_pb2.ListPlanRunsRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.ListPlanRunsResponse:
        page = page_of(request.page, request.limit)
        found, total = await self._cases.plans.runs(require_identity().user_id, request.id, page)
        return portfolio_pb2.ListPlanRunsResponse(
            runs=[run_message(r) for r in found], pagination=page.describe(total)
        )
