"""A stand-in portfolio replica, run as its own process so that a test can kill it with -9:
`python -m tests.integration.held_replica PORT NAME MODE`.

MODE `answers`: ListPortfolios and CreatePortfolio answer at once with a portfolio named NAME.
MODE `holds`: both hold every call until the process dies, after taking it (`holds-answering`:
after sending the response headers too, as a replica does that has begun its answer).
Each call taken is announced on stdout (`took ListPortfolios`), so the test knows which calls
are in flight here when it kills the process.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

SERVICE = "stockfolio.portfolio.v1.PortfolioService"
MODES = ("answers", "holds", "holds-answering")


class Replica(portfolio_pb2_grpc.PortfolioServiceServicer):
    def __init__(self, name: str, mode: str) -> None:
        self.name = name
        self.mode = mode

    async def _take(self, rpc: str, context: grpc.aio.ServicerContext) -> None:
        print(f"took {rpc}", flush=True)
        if self.mode == "answers":
            return
        if self.mode == "holds-answering":
            await context.send_initial_metadata(())
        await asyncio.Event().wait()  # until the process is killed

    async def ListPortfolios(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._take("ListPortfolios", context)
        reply = portfolio_pb2.ListPortfoliosResponse()
        reply.portfolios.add(name=self.name)
        return reply

    async def CreatePortfolio(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._take("CreatePortfolio", context)
        return portfolio_pb2.CreatePortfolioResponse(
            portfolio=portfolio_pb2.Portfolio(name=self.name)
        )


async def serve(port: int, name: str, mode: str) -> None:
    server = grpc.aio.server()
    portfolio_pb2_grpc.add_PortfolioServiceServicer_to_server(Replica(name, mode), server)
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    for service in ("", SERVICE):
        await checks.set(service, health_pb2.HealthCheckResponse.SERVING)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("serving", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    port, name, mode = sys.argv[1:4]
    if mode not in MODES:
        raise SystemExit(f"mode must be one of {MODES}")
    asyncio.run(serve(int(port), name, mode))
