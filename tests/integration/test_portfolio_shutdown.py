"""Shutdown with open streams: the drain hooks end them, so stopping does not sit out the
whole grace period waiting for streams that never end by themselves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from services.portfolio.server import build as build_portfolio
from services.runtime.config import RuntimeConfig
from services.runtime.server import running
from tests.conftest import facade_credentials


async def test_open_event_streams_end_at_shutdown_instead_of_holding_the_grace_period(
    make_config: Callable[..., RuntimeConfig], users_service: RuntimeConfig, tmp_path: Path
) -> None:
    from services.runtime.migrations import upgrade

    # A database of its own: the users service of the sqlite case keeps tmp_path/test.db, and
    # two services' migration histories in one file collide.
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'portfolio.db'}"
    await asyncio.to_thread(upgrade, "portfolio", sqlite_url)
    config = make_config(
        "portfolio",
        PORTFOLIO_DATABASE_URL=sqlite_url,
        USERS_ADDRS=users_service.addresses["users"][0],
        USE_MOCK_PRICES="true",
        MOCK_UPDATE_INTERVAL="3600000",
        PORTFOLIO_REVALUE_INTERVAL="3600",
    )
    service_token = facade_credentials().metadata()
    grace = 10.0
    channel = None
    streams: list[asyncio.Task[grpc.StatusCode]] = []
    async with running(config, build_portfolio, port=0, grace=grace) as service:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
        stub = portfolio_pb2_grpc.PortfolioServiceStub(channel)

        async def follow(call: grpc.aio.UnaryStreamCall) -> grpc.StatusCode:
            try:
                async for _ in call:
                    pass
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        for call in (
            stub.StreamPortfolioEvents(
                portfolio_pb2.StreamPortfolioEventsRequest(), metadata=service_token
            ),
            stub.StreamMarket(portfolio_pb2.StreamMarketRequest(), metadata=service_token),
        ):
            await call.initial_metadata()  # subscribed
            streams.append(asyncio.create_task(follow(call)))
        stopping = time.monotonic()
    stopped_after = time.monotonic() - stopping
    ends = await asyncio.wait_for(asyncio.gather(*streams), timeout=5)
    await channel.close()
    # Both streams ended cleanly (not cut off at the end of the grace period), and the stop
    # came well inside it.
    assert ends == [grpc.StatusCode.OK, grpc.StatusCode.OK]
    assert stopped_after < grace / 2
