"""A first end-to-end check of the runtime: a stub service answers health and UNIMPLEMENTED."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from services.portfolio.server import build
from services.runtime.config import RuntimeConfig
from services.runtime.server import running


async def test_stub_service_serves_health_and_rejects_missing_token(
    make_config: Callable[..., RuntimeConfig],
) -> None:
    config = make_config("portfolio", USERS_ADDRS="127.0.0.1:1")
    async with (
        running(config, build, port=0, grace=0) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="stockfolio.portfolio.v1.PortfolioService")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = portfolio_pb2_grpc.PortfolioServiceStub(channel)
        try:
            await stub.ListPortfolios(portfolio_pb2.ListPortfoliosRequest())
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            assert error.details() == "missing bearer token"
        else:
            raise AssertionError("a call without a token must fail")
