"""Channels from `create_channel` against real servers: calls spread over replicas, a replica
that reports NOT_SERVING leaves the rotation, and only idempotent RPCs are retried."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from services.runtime.channels import create_channel
from services.runtime.config import MIN_RPC_DEADLINE
from services.runtime.errors import Unavailable
from tests.integration.conftest import Issue, Serve

PORTFOLIO = portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioService"]
ADD = portfolio_pb2_grpc.add_PortfolioServiceServicer_to_server


class Replica(portfolio_pb2_grpc.PortfolioServiceServicer):
    """Answers with its own name; its first `flaky` calls of each RPC fail UNAVAILABLE."""

    def __init__(self, name: str, *, flaky: int = 0) -> None:
        self.name = name
        self.flaky = flaky
        self.attempts: collections.Counter[str] = collections.Counter()

    def _attempt(self, rpc: str) -> None:
        self.attempts[rpc] += 1
        if self.attempts[rpc] <= self.flaky:
            raise Unavailable(f"{self.name} is briefly unavailable")

    async def ListPortfolios(self, request: Any, context: Any) -> Any:
        self._attempt("ListPortfolios")
        reply = portfolio_pb2.ListPortfoliosResponse()
        reply.portfolios.add(name=self.name)
        return reply

    async def CreatePortfolio(self, request: Any, context: Any) -> Any:
        self._attempt("CreatePortfolio")
        return portfolio_pb2.CreatePortfolioResponse(
            portfolio=portfolio_pb2.Portfolio(name=self.name)
        )


Stub = portfolio_pb2_grpc.PortfolioServiceStub
Reach = Callable[..., contextlib.AbstractAsyncContextManager[Stub]]


@pytest.fixture
def reach(serve: Serve) -> Reach:
    """`reach(replica, deadline=10)`: a stub whose channel reaches `replica`, served alone."""

    @contextlib.asynccontextmanager
    async def through(replica: Replica, deadline: float = 10) -> AsyncIterator[Stub]:
        async with (
            serve(replica, ADD, PORTFOLIO) as service,
            create_channel(
                [f"127.0.0.1:{service.port}"], [PORTFOLIO], deadline=deadline
            ) as channel,
        ):
            yield Stub(channel)

    return through


async def who_answers(stub: Any, metadata: Any, calls: int) -> collections.Counter[str]:
    answers: collections.Counter[str] = collections.Counter()
    for _ in range(calls):
        reply = await stub.ListPortfolios(portfolio_pb2.ListPortfoliosRequest(), metadata=metadata)
        answers[reply.portfolios[0].name] += 1
    return answers


async def test_calls_spread_over_replicas_and_skip_one_that_is_not_serving(
    serve: Serve, bearer: Issue
) -> None:
    a, b = Replica("a"), Replica("b")
    async with serve(a, ADD, PORTFOLIO) as first, serve(b, ADD, PORTFOLIO) as second:
        addresses = [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"]
        async with create_channel(addresses, [PORTFOLIO], deadline=10) as channel:
            stub = portfolio_pb2_grpc.PortfolioServiceStub(channel)
            metadata = bearer()
            spread = await who_answers(stub, metadata, 20)
            for _ in range(100):  # both subchannels connect within moments
                if len(spread) == 2:
                    break
                spread = await who_answers(stub, metadata, 20)
            assert set(spread) == {"a", "b"}, "round robin reaches every replica"

            await first.health.set_serving(False)
            for _ in range(100):  # the client hears of it through its health watch
                if await who_answers(stub, metadata, 10) == {"b": 10}:
                    break
                await asyncio.sleep(0.05)
            assert await who_answers(stub, metadata, 20) == {"b": 20}

            await first.health.set_serving(True)
            for _ in range(100):
                if "a" in await who_answers(stub, metadata, 10):
                    break
                await asyncio.sleep(0.05)
            assert set(await who_answers(stub, metadata, 20)) == {"a", "b"}, "and comes back"


async def test_an_idempotent_rpc_is_retried_on_unavailable(reach: Reach, bearer: Issue) -> None:
    replica = Replica("only", flaky=2)
    async with reach(replica) as stub:
        reply = await stub.ListPortfolios(portfolio_pb2.ListPortfoliosRequest(), metadata=bearer())
        assert reply.portfolios[0].name == "only"
        assert replica.attempts["ListPortfolios"] == 3, "two failures, then the third attempt"


@pytest.mark.parametrize(
    ("rpc", "message", "flaky", "attempts"),
    [
        pytest.param(
            "CreatePortfolio",
            portfolio_pb2.CreatePortfolioRequest(name="x"),
            1,
            1,  # a create may have happened: no retry
            id="a non-idempotent rpc is not retried",
        ),
        pytest.param(
            "ListPortfolios",
            portfolio_pb2.ListPortfoliosRequest(),
            5,
            3,
            id="retries give up after three attempts",
        ),
    ],
)
async def test_a_failing_call_is_tried_as_often_as_its_rpc_allows(
    reach: Reach, bearer: Issue, rpc: str, message: Any, flaky: int, attempts: int
) -> None:
    replica = Replica("only", flaky=flaky)
    async with reach(replica) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await getattr(stub, rpc)(message, metadata=bearer())
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert replica.attempts[rpc] == attempts


async def test_the_default_deadline_ends_calls_made_without_a_timeout(
    reach: Reach, bearer: Issue
) -> None:
    class Stuck(Replica):
        async def ListPortfolios(self, request: Any, context: Any) -> Any:
            await asyncio.Event().wait()

    async with reach(Stuck("stuck"), deadline=MIN_RPC_DEADLINE) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await asyncio.wait_for(
                stub.ListPortfolios(portfolio_pb2.ListPortfoliosRequest(), metadata=bearer()),
                timeout=60,
            )
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_calls_within_the_smallest_allowed_deadline_succeed(
    reach: Reach, bearer: Issue
) -> None:
    # grpcio starts a service-config timeout's clock early (grpc/grpc#34547): below the floor
    # config enforces, quick calls failed DEADLINE_EXCEEDED at once.
    async with reach(Replica("quick"), deadline=MIN_RPC_DEADLINE) as stub:
        for _ in range(5):
            reply = await stub.ListPortfolios(
                portfolio_pb2.ListPortfoliosRequest(), metadata=bearer()
            )
            assert reply.portfolios[0].name == "quick"
