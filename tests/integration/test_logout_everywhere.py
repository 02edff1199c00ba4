"""Logout reaches every service: a revoked session is refused by another service within 5 s,
with and without Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
import pytest
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.portfolio.server import build as build_portfolio
from services.runtime.auth import bearer
from services.runtime.config import RuntimeConfig
from services.runtime.server import running
from services.users.server import build as build_users


@pytest.mark.parametrize("with_redis", [False, True], ids=["in-process", "redis"])
async def test_logout_is_refused_by_another_service_within_five_seconds(
    make_config: Callable[..., RuntimeConfig],
    users_database: str,
    portfolio_database_url: str,
    request: pytest.FixtureRequest,
    with_redis: bool,
) -> None:
    extra = {"REDIS_URL": str(request.getfixturevalue("redis_url"))} if with_redis else {}
    users_config = make_config("users", USERS_DATABASE_URL=users_database, BCRYPT_COST="4", **extra)
    async with running(users_config, build_users, port=0, grace=0) as users:
        users_addr = f"127.0.0.1:{users.port}"
        portfolio_config = make_config(
            "portfolio",
            USERS_ADDRS=users_addr,
            PORTFOLIO_DATABASE_URL=portfolio_database_url,
            **extra,
        )
        async with (
            running(portfolio_config, build_portfolio, port=0, grace=0) as portfolio,
            grpc.aio.insecure_channel(users_addr) as users_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{portfolio.port}") as portfolio_channel,
        ):
            accounts = users_pb2_grpc.UsersServiceStub(users_channel)
            portfolios = portfolio_pb2_grpc.PortfolioServiceStub(portfolio_channel)
            signed = await accounts.Register(
                users_pb2.RegisterRequest(email="sam@example.com", password="pass-word-1")
            )
            auth = (bearer(signed.tokens.access_token),)

            async def portfolio_code() -> grpc.StatusCode:
                try:
                    await portfolios.ListPortfolios(
                        portfolio_pb2.ListPortfoliosRequest(), metadata=auth
                    )
                except grpc.aio.AioRpcError as error:
                    return error.code()
                return grpc.StatusCode.OK

            # Before logout the token passes the portfolio service's check; the answer is now
            # remembered there.
            assert await portfolio_code() == grpc.StatusCode.OK
            await accounts.Logout(users_pb2.LogoutRequest(), metadata=auth)
            logged_out = time.monotonic()
            while await portfolio_code() != grpc.StatusCode.UNAUTHENTICATED:
                assert time.monotonic() - logged_out < 5.0, "revocation took over 5 seconds"
                await asyncio.sleep(0.1)
