"""Health: gRPC's health service follows the dependencies and shutdown; the admin port serves
the same state over plain HTTP, with Prometheus metrics beside it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from aiohttp.test_utils import TestClient, TestServer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from services.runtime.admin import create_admin_app
from services.runtime.health import NOT_SERVING, SERVING, Health, watching
from services.runtime.server import Running, stop_server
from tests.integration.conftest import Issue, Serve
from tests.waiting import until

PORTFOLIO = portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioService"]
ADD = portfolio_pb2_grpc.add_PortfolioServiceServicer_to_server


class Dependency:
    """A dependency the test takes down and brings back."""

    def __init__(self) -> None:
        self.up = True

    async def check(self) -> bool:
        return self.up


class SlowPortfolios(portfolio_pb2_grpc.PortfolioServiceServicer):
    """DeletePortfolio waits until the test releases it: a call in flight during shutdown."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def DeletePortfolio(self, request: Any, context: Any) -> Any:
        self.entered.set()
        await self.release.wait()
        return portfolio_pb2.DeletePortfolioResponse()


async def status_of(channel: grpc.aio.Channel, service: str) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service)
    )
    status: int = reply.status
    return status


async def wait_for_status(channel: grpc.aio.Channel, service: str, wanted: int) -> int:
    for _ in range(200):
        status = await status_of(channel, service)
        if status == wanted:
            return status
        await asyncio.sleep(0.05)
    return await status_of(channel, service)


@pytest.fixture
def database() -> Dependency:
    return Dependency()


@pytest.fixture
async def service(serve: Serve, database: Dependency) -> AsyncIterator[Running]:
    async with serve(
        SlowPortfolios(), ADD, PORTFOLIO, checks={"database": database.check}
    ) as running:
        yield running


async def test_a_failing_dependency_flips_every_name_to_not_serving_and_back(
    service: Running, database: Dependency
) -> None:
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
        watching(service.health, interval=0.05),
    ):
        assert await status_of(channel, "") == SERVING
        assert await status_of(channel, PORTFOLIO.full_name) == SERVING

        database.up = False
        assert await wait_for_status(channel, PORTFOLIO.full_name, NOT_SERVING) == NOT_SERVING
        assert await status_of(channel, "") == NOT_SERVING
        assert service.health.report() == {
            "status": "NOT_SERVING",
            "dependencies": {"database": "down"},
        }

        database.up = True
        assert await wait_for_status(channel, PORTFOLIO.full_name, SERVING) == SERVING
        assert await status_of(channel, "") == SERVING
        assert service.health.report()["dependencies"] == {"database": "up"}


async def test_a_service_whose_dependency_is_down_at_start_starts_not_serving(
    serve: Serve, database: Dependency
) -> None:
    database.up = False
    async with (
        serve(SlowPortfolios(), ADD, PORTFOLIO, checks={"database": database.check}) as svc,
        grpc.aio.insecure_channel(f"127.0.0.1:{svc.port}") as channel,
    ):
        assert await status_of(channel, PORTFOLIO.full_name) == NOT_SERVING
        assert await status_of(channel, "") == NOT_SERVING


async def test_a_check_that_raises_counts_as_down() -> None:
    async def broken() -> bool:
        raise ConnectionRefusedError("redis is gone")

    async def fine() -> bool:
        return True

    health = Health(["x.v1.X"], {"redis": broken, "database": fine})
    assert await health.check_dependencies() is False
    assert health.dependencies == {"redis": False, "database": True}


async def test_a_check_that_hangs_counts_as_down_instead_of_hanging_the_watch() -> None:
    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True

    health = Health(["x.v1.X"], {"database": hangs})
    healthy = await asyncio.wait_for(health.check_dependencies(), timeout=60)
    assert healthy is False
    assert health.report()["dependencies"] == {"database": "down"}


async def test_stop_server_reports_not_serving_before_draining_in_flight_calls(
    serve: Serve, bearer: Issue
) -> None:
    servicer = SlowPortfolios()
    async with serve(servicer, ADD, PORTFOLIO) as service:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=PORTFOLIO.full_name)
            )
            assert (await watch.read()).status == SERVING
            in_flight = portfolio_pb2_grpc.PortfolioServiceStub(channel).DeletePortfolio(
                portfolio_pb2.DeletePortfolioRequest(id="p-1"), metadata=bearer()
            )
            await asyncio.wait_for(servicer.entered.wait(), timeout=10)

            stopping = asyncio.create_task(stop_server(service.server, service.health, 30))
            update = await asyncio.wait_for(watch.read(), timeout=10)
            assert update.status == NOT_SERVING, "balancers hear of it first"
            assert not stopping.done(), "the in-flight call is still draining"
            assert service.health.report()["status"] == "NOT_SERVING"

            watch.cancel()
            servicer.release.set()
            assert await asyncio.wait_for(in_flight, timeout=10) == (
                portfolio_pb2.DeletePortfolioResponse()
            ), "the in-flight call completes"
            await asyncio.wait_for(stopping, timeout=30)

        await service.health.set_serving(True)
        assert service.health.serving is False, "once shutting down, nothing turns it back"


async def test_admin_health_answers_200_while_serving_and_503_when_not(service: Running) -> None:
    async with TestClient(TestServer(create_admin_app("portfolio", service.health))) as client:
        response = await client.get("/health")
        assert response.status == 200
        assert await response.json() == {
            "service": "portfolio",
            "status": "SERVING",
            "dependencies": {"database": "up"},
        }

        await service.health.set_serving(False)
        response = await client.get("/health")
        assert response.status == 503
        assert (await response.json())["status"] == "NOT_SERVING"


def unimplemented_quotes() -> float:
    value = REGISTRY.get_sample_value(
        "stockfolio_grpc_server_handled_total",
        {"service": "portfolio", "method": "GetQuote", "code": "UNIMPLEMENTED"},
    )
    return value or 0.0


async def test_admin_metrics_expose_the_rpc_counters(service: Running, bearer: Issue) -> None:
    before = unimplemented_quotes()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        stub = portfolio_pb2_grpc.PortfolioServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetQuote(portfolio_pb2.GetQuoteRequest(symbol="AAPL"), metadata=bearer())
    # A failed call is counted once its status is sent, which the client may hear of first.
    await until(lambda: unimplemented_quotes() > before, "the count")
    async with TestClient(TestServer(create_admin_app("portfolio", service.health))) as client:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    # The registry is the process's: other tests' GetQuote calls (answered OK) count there too.
    counters = [
        line
        for line in text.splitlines()
        if line.startswith("stockfolio_grpc_server_handled_total{")
        and 'method="GetQuote"' in line
        and 'code="UNIMPLEMENTED"' in line
    ]
    assert counters, text
    (line,) = counters
    assert 'service="portfolio"' in line
    assert float(line.rsplit(" ", 1)[1]) >= 1
    assert "stockfolio_grpc_server_handling_seconds_bucket" in text
