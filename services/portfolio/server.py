"""Builds the portfolio service's server parts from its config."""

from __future__ import annotations

import contextlib

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from services.portfolio.servicer import PortfolioServiceServicer
from services.runtime.config import RuntimeConfig
from services.runtime.server import ServiceParts
from services.runtime.sessions import remote_sessions

SERVICE = portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioService"]


async def build(config: RuntimeConfig, resources: contextlib.AsyncExitStack) -> ServiceParts:
    # The generated stubs mark every RPC abstract; at run time the base class answers
    # UNIMPLEMENTED, which is what this service does until its issue lands.
    servicer = PortfolioServiceServicer()  # type: ignore[abstract]

    def register(server: grpc.aio.Server) -> None:
        portfolio_pb2_grpc.add_PortfolioServiceServicer_to_server(servicer, server)

    return ServiceParts(
        services=[SERVICE], register=register, sessions=await remote_sessions(config, resources)
    )
