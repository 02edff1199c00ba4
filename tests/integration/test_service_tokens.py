"""Internal RPCs: only our own services reach them, with a service token, and a service token
reaches nothing else."""

from __future__ import annotations

import grpc
import pytest
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from services.runtime.descriptors import method_rules
from tests.conftest import facade_credentials
from tests.integration.conftest import Issue, Serve, SessionBook

SERVICE = portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioService"]


class MarketStub(portfolio_pb2_grpc.PortfolioServiceServicer):
    """Answers the internal stream with one tick, so a test sees who got through."""

    async def StreamMarket(self, request, context):  # type: ignore[no-untyped-def]
        yield portfolio_pb2.StreamMarketResponse(
            quote=portfolio_pb2.Quote(symbol="AAPL", price="187.42")
        )


def test_the_streams_for_the_facade_are_declared_internal() -> None:
    rules = method_rules([SERVICE])
    internal = {path.rsplit("/", 1)[1] for path, rule in rules.items() if rule.internal}
    assert internal == {"StreamMarket", "StreamPortfolioEvents"}


async def code_of(call: object) -> grpc.StatusCode:
    try:
        async for _ in call:  # type: ignore[attr-defined]
            pass
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("caller", "method", "expected"),
    [
        ("service", "StreamMarket", grpc.StatusCode.OK),
        ("user", "StreamMarket", grpc.StatusCode.PERMISSION_DENIED),
        ("none", "StreamMarket", grpc.StatusCode.UNAUTHENTICATED),
        ("service", "ListPortfolios", grpc.StatusCode.UNAUTHENTICATED),
    ],
)
async def test_who_reaches_an_internal_rpc(
    serve: Serve,
    sessions: SessionBook,
    bearer: Issue,
    caller: str,
    method: str,
    expected: grpc.StatusCode,
) -> None:
    metadata = {
        "service": facade_credentials().metadata(),
        "user": bearer(),
        "none": (),
    }[caller]
    async with (
        serve(
            MarketStub(), portfolio_pb2_grpc.add_PortfolioServiceServicer_to_server, SERVICE
        ) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        stub = portfolio_pb2_grpc.PortfolioServiceStub(channel)
        if method == "StreamMarket":
            code = await code_of(
                stub.StreamMarket(portfolio_pb2.StreamMarketRequest(), metadata=metadata)
            )
        else:
            try:
                await stub.ListPortfolios(portfolio_pb2.ListPortfoliosRequest(), metadata=metadata)
                code = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as error:
                code = error.code()
    assert code == expected
    # A service token never costs a session lookup: it names no session.
    if caller == "service":
        assert sessions.asked == []
