"""Tokens only the users service can make: every service, reached directly over gRPC as real
processes, refuses a token signed any other way; the facade's service token reaches the one
callee it names, and only its internal RPCs."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from services.runtime.auth import ServiceCredentials, ServiceTokenSigner, bearer
from services.runtime.config import DOMAIN_SERVICES
from services.runtime.keys import SigningKey
from tests.conftest import TEST_SERVICE_KEY, TEST_USER_KEY, users_codec
from tests.forged_tokens import AUTHENTICATED_RPC, forged_tokens
from tests.integration.conftest import ROOT, ServiceProcess, Spawn, service_environment
from tests.rpc_errors import reason


def migrate(var_dir: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "services.runtime.migrate"],
        cwd=ROOT,
        env=service_environment(var_dir),
        check=True,
        capture_output=True,
        timeout=120,
    )


async def call(address: str, method: str, token: str) -> grpc.aio.AioRpcError | None:
    """One unary call with an empty request; the error it ended with, if any."""
    async with grpc.aio.insecure_channel(address) as channel:
        rpc = channel.unary_unary(method)
        try:
            await rpc(b"", metadata=(bearer(token),), timeout=10)
        except grpc.aio.AioRpcError as error:
            return error
    return None


async def test_every_service_refuses_a_token_not_signed_by_the_users_key(
    spawn: Spawn, tmp_path: Path
) -> None:
    await asyncio.to_thread(migrate, tmp_path / "var")
    forged = forged_tokens(TEST_USER_KEY.kid, TEST_USER_KEY.public_pem())
    genuine, _ = users_codec().issue_access(
        user_id="u-1", session_id="s-1", email="u@example.com", roles=["user", "admin"]
    )
    async with contextlib.AsyncExitStack() as stack:
        # The shells' sandbox is not what this test is about; bubblewrap may be absent. The
        # five start at once (one after another, their start-ups were most of this test).
        started = [spawn(name, TERMINAL_SANDBOX="off") for name in DOMAIN_SERVICES]
        async with asyncio.TaskGroup() as group:
            starting = [
                group.create_task(stack.enter_async_context(service)) for service in started
            ]
        processes: list[ServiceProcess] = [task.result() for task in starting]
        for process in processes:
            method = AUTHENTICATED_RPC[process.name]
            for kind, token in forged.items():
                error = await call(process.address, method, token)
                assert error is not None, f"{process.name} accepted a token forged by {kind}"
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED, (process.name, kind)
                assert reason(error) == "TOKEN_INVALID", (process.name, kind)
            # The users service's own key passes the signature check everywhere (what follows,
            # the session check, has no users service to ask here).
            error = await call(process.address, method, genuine)
            assert error is None or reason(error) != "TOKEN_INVALID", (process.name, error)


async def market_code(address: str, credentials: ServiceCredentials) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = portfolio_pb2_grpc.PortfolioServiceStub(channel)
        stream = stub.StreamMarket(
            portfolio_pb2.StreamMarketRequest(), metadata=credentials.metadata(), timeout=10
        )
        try:
            await stream.initial_metadata()
            await asyncio.wait_for(stream.read(), timeout=5)
        except grpc.aio.AioRpcError as error:
            return error.code()
        except TimeoutError:
            pass  # subscribed and waiting for the next tick: let in
        finally:
            stream.cancel()
    return grpc.StatusCode.OK


# (audience, signed with the facade's key): what the market stream answers. One portfolio
# process answers all three (each a stream of its own, cancelled before the next).
MARKET_CASES = {
    ("portfolio", True): grpc.StatusCode.OK,
    ("workspace", True): grpc.StatusCode.UNAUTHENTICATED,
    ("portfolio", False): grpc.StatusCode.UNAUTHENTICATED,
}


async def test_the_market_stream_takes_the_facades_service_token_for_portfolio_only(
    spawn: Spawn, tmp_path: Path
) -> None:
    await asyncio.to_thread(migrate, tmp_path / "var")
    async with spawn("portfolio", USE_MOCK_PRICES="true") as portfolio:
        answered: dict[tuple[str, bool], grpc.StatusCode] = {}
        for audience, facades_key in MARKET_CASES:
            key = TEST_SERVICE_KEY if facades_key else SigningKey.generate()
            credentials = ServiceCredentials(ServiceTokenSigner(key, service="facade"), audience)
            answered[audience, facades_key] = await market_code(portfolio.address, credentials)
    assert answered == MARKET_CASES
