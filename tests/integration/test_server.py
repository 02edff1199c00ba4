"""Starting a service: a port that is taken fails clearly, and what was built is closed."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

import pytest
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from services.runtime.config import RuntimeConfig
from services.runtime.server import ServiceParts, running
from tests.integration.conftest import SessionBook

PORTFOLIO = portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioService"]


async def test_a_taken_port_fails_naming_the_service_and_address_and_closes_resources(
    make_config: Callable[..., RuntimeConfig], sessions: SessionBook
) -> None:
    closed: list[str] = []

    async def build(config: RuntimeConfig, resources: contextlib.AsyncExitStack) -> ServiceParts:
        resources.callback(closed.append, "database")
        return ServiceParts(
            services=[PORTFOLIO],
            register=lambda server: portfolio_pb2_grpc.add_PortfolioServiceServicer_to_server(
                portfolio_pb2_grpc.PortfolioServiceServicer(), server
            ),
            sessions=sessions,
        )

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = make_config("portfolio", PORTFOLIO_PORT=str(port))
        with pytest.raises(OSError, match=f"cannot bind portfolio to 127.0.0.1:{port}"):
            async with running(config, build):
                pass
    assert closed == ["database"]
