"""The exposure RPC of PortfolioService (a mixin of the servicer): GetExposure, request ->
exposure.py -> response, and the messages it answers with."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.domain import present_money, present_ratio
from services.portfolio.exposure import Bucket, Exposure
from services.runtime.interceptors import require_identity

if TYPE_CHECKING:
    from services.portfolio.servicer import UseCases


class ExposureRpcs:
    _cases: UseCases

    async def GetExposure(
        self, request: portfolio_pb2.GetExposureRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetExposureResponse:
        found = await self._cases.exposures.exposure(
            require_identity().user_id, request.portfolio_id
        )
        return exposure_message(found)


def _buckets(buckets: list[Bucket]) -> list[portfolio_pb2.ExposureBucket]:
    return [
        portfolio_pb2.ExposureBucket(
            name=b.name,
            value=present_money(b.value),
            weight=present_ratio(b.weight),
            symbols=b.symbols,
            cash=b.is_cash,
        )
        for b in buckets
    ]


def exposure_message(found: Exposure) -> portfolio_pb2.GetExposureResponse:
    return portfolio_pb2.GetExposureResponse(
        portfolio_id=found.portfolio_id,
        currency=found.currency,
        total_value=present_money(found.total_value),
        sectors=_buckets(found.sectors),
        countries=_buckets(found.countries),
        asset_types=_buckets(found.asset_types),
        currencies=_buckets(found.currencies),
    )
