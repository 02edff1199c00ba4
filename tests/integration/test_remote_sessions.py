"""Another service asks users whether a caller's session is live: once per session for
concurrent calls, under the caller's correlation id, and failing closed when users is down."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from io import StringIO

import grpc
from google.rpc import error_details_pb2
from prometheus_client import REGISTRY
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.portfolio.server import build as build_portfolio
from services.runtime.auth import bearer
from services.runtime.config import RuntimeConfig
from services.runtime.server import running
from services.runtime.status import parse_status
from tests.integration.conftest import Issue


def validations() -> float:
    value = REGISTRY.get_sample_value(
        "stockfolio_grpc_server_handled_total",
        {"service": "users", "method": "ValidateToken", "code": "OK"},
    )
    return value or 0.0


async def test_concurrent_calls_ask_users_once_under_the_callers_correlation_id(
    make_config: Callable[..., RuntimeConfig],
    users_service: RuntimeConfig,
    portfolio_database_url: str,
    rpc_log: StringIO,
) -> None:
    users_address = users_service.addresses["users"][0]
    portfolio_config = make_config(
        "portfolio", USERS_ADDRS=users_address, PORTFOLIO_DATABASE_URL=portfolio_database_url
    )
    async with (
        running(portfolio_config, build_portfolio, port=0, grace=0) as portfolio,
        grpc.aio.insecure_channel(users_address) as users_channel,
        grpc.aio.insecure_channel(f"127.0.0.1:{portfolio.port}") as portfolio_channel,
    ):
        signed = await users_pb2_grpc.UsersServiceStub(users_channel).Register(
            users_pb2.RegisterRequest(email="lin@example.com", password="pass-word-1")
        )
        auth = bearer(signed.tokens.access_token)
        stub = portfolio_pb2_grpc.PortfolioServiceStub(portfolio_channel)
        before = validations()

        async def call(index: int) -> grpc.StatusCode:
            try:
                await stub.ListPortfolios(
                    portfolio_pb2.ListPortfoliosRequest(),
                    metadata=(auth, ("x-correlation-id", f"fan-out-{index}")),
                )
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        codes = await asyncio.gather(*(call(i) for i in range(10)))
        assert set(codes) == {grpc.StatusCode.OK}, "all got past the session check"
        assert validations() == before + 1, "one question to users for ten concurrent calls"

    lines = [json.loads(line) for line in rpc_log.getvalue().splitlines()]
    (check,) = [line for line in lines if line.get("method", "").endswith("/ValidateToken")]
    assert check["correlationId"].startswith("fan-out-"), "users logs it under the caller's id"


async def test_a_protected_call_fails_closed_when_users_cannot_be_reached(
    make_config: Callable[..., RuntimeConfig], bearer: Issue
) -> None:
    config = make_config("portfolio", USERS_ADDRS="127.0.0.1:1")
    async with (
        running(config, build_portfolio, port=0, grace=0) as portfolio,
        grpc.aio.insecure_channel(f"127.0.0.1:{portfolio.port}") as channel,
    ):
        stub = portfolio_pb2_grpc.PortfolioServiceStub(channel)
        try:
            await stub.ListPortfolios(portfolio_pb2.ListPortfoliosRequest(), metadata=bearer())
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert error.details() == "cannot verify the session right now; retry shortly"
            status = parse_status(error.trailing_metadata())
            assert status is not None
            info = error_details_pb2.ErrorInfo()
            assert status.details[0].Unpack(info)
            assert info.reason == "UNAVAILABLE"
        else:
            raise AssertionError("a session nobody could verify must not be let through")
