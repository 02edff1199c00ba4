"""Nobody can lock a user out without their password: the login guard through the real users
server and through the real facade, on the in-process cache and on Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from facade.app import create_app
from facade.config import load_facade_config
from services.runtime.config import DOMAIN_SERVICES, RuntimeConfig
from services.runtime.migrations import upgrade
from services.runtime.server import running
from services.users.server import build as build_users
from tests.rpc_errors import expect_error, reason, retry_after

PASSWORD = "correct-horse-9"
WRONG = "wrong-horse-9"
# Nothing listens here: the services this test does not need.
DEAD_ADDRESS = "127.0.0.1:1"

Client = TestClient[web.Request, web.Application]


class Users(NamedTuple):
    address: str
    stub: users_pb2_grpc.UsersServiceStub


StartUsers = Callable[..., contextlib.AbstractAsyncContextManager[Users]]


@pytest.fixture(params=["inprocess", "redis"])
def cache_environment(request: pytest.FixtureRequest) -> dict[str, str]:
    """The guard's counters in the in-process cache, then in real Redis."""
    if request.param == "inprocess":
        return {}
    return {"REDIS_URL": str(request.getfixturevalue("redis_url"))}


@pytest.fixture
def users_environment(sqlite_url: str, cache_environment: dict[str, str]) -> dict[str, str]:
    upgrade("users", sqlite_url)
    return {"USERS_DATABASE_URL": sqlite_url, "BCRYPT_COST": "4", **cache_environment}


@pytest.fixture
def start_users(
    make_config: Callable[..., RuntimeConfig], users_environment: dict[str, str]
) -> StartUsers:
    """A real users server on port 0 (its loopback callers are trusted proxies, as the facade
    is); keyword arguments are environment variables on top."""

    @contextlib.asynccontextmanager
    async def start(**environ: str) -> AsyncIterator[Users]:
        config = make_config("users", **users_environment, **environ)
        async with running(config, build_users, port=0, grace=0) as service:
            address = f"127.0.0.1:{service.port}"
            async with grpc.aio.insecure_channel(address) as channel:
                yield Users(address, users_pb2_grpc.UsersServiceStub(channel))

    return start


def from_address(address: str) -> tuple[tuple[str, str], ...]:
    return (("x-forwarded-for", address),)


async def login(
    stub: users_pb2_grpc.UsersServiceStub, email: str, password: str, address: str
) -> users_pb2.LoginResponse:
    request = users_pb2.LoginRequest(email=email, password=password)
    response: users_pb2.LoginResponse = await stub.Login(request, metadata=from_address(address))
    return response


async def wrong_password(stub: users_pb2_grpc.UsersServiceStub, email: str, address: str) -> None:
    """A failed login from `address`: a plain INVALID_CREDENTIALS."""
    error = await expect_error(login(stub, email, WRONG, address), grpc.StatusCode.UNAUTHENTICATED)
    assert reason(error) == "INVALID_CREDENTIALS"


async def too_many_attempts(
    stub: users_pb2_grpc.UsersServiceStub, email: str, address: str
) -> grpc.aio.AioRpcError:
    """A login with the right password refused as TOO_MANY_ATTEMPTS; the error, for its wait."""
    error = await expect_error(
        login(stub, email, PASSWORD, address), grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert reason(error) == "TOO_MANY_ATTEMPTS"
    return error


async def test_failures_beyond_the_free_ones_make_only_that_address_wait_and_success_forgives(
    start_users: StartUsers,
) -> None:
    async with start_users() as (_, stub):
        await stub.Register(users_pb2.RegisterRequest(email="gus@example.com", password=PASSWORD))
        for _ in range(6):  # five free failures, and the sixth, which starts a 1 s wait
            await wrong_password(stub, "gus@example.com", "203.0.113.5")
        # Even the right password waits: the password is not checked at all while refused.
        refused = await too_many_attempts(stub, "gus@example.com", "203.0.113.5")
        assert 0 < retry_after(refused) <= 1.0
        assert "from this address" in (refused.details() or "")
        # Another address is not slowed at all.
        elsewhere = await login(stub, "gus@example.com", PASSWORD, "198.51.100.7")
        assert elsewhere.user.email == "gus@example.com"
        assert elsewhere.tokens.access_token
        await asyncio.sleep(retry_after(refused) + 0.05)
        back = await login(stub, "gus@example.com", PASSWORD, "203.0.113.5")
        assert back.user.email == "gus@example.com"
        # The success forgave this address its failures here: a typo is a plain 401 again.
        await wrong_password(stub, "gus@example.com", "203.0.113.5")


async def test_an_account_under_a_spread_out_attack_slows_failing_addresses_and_no_other(
    start_users: StartUsers,
) -> None:
    async with start_users(LOGIN_FAILURES_PER_ACCOUNT="3/15minutes") as (_, stub):
        await stub.Register(users_pb2.RegisterRequest(email="ivy@example.com", password=PASSWORD))
        for i in range(4):  # four addresses, one failure each: the fourth passes the ceiling
            await wrong_password(stub, "ivy@example.com", f"192.0.2.{i}")
        # Past the ceiling a failing address has no free failures: its next try waits.
        slowed = await too_many_attempts(stub, "ivy@example.com", "192.0.2.3")
        assert 0 < retry_after(slowed) <= 1.0
        # Addresses that failed before the ceiling keep their free failures; new ones pass.
        earlier = await login(stub, "ivy@example.com", PASSWORD, "192.0.2.0")
        fresh = await login(stub, "ivy@example.com", PASSWORD, "198.51.100.8")
        assert earlier.user.email == fresh.user.email == "ivy@example.com"


async def test_failures_across_accounts_refuse_that_address_for_the_window(
    start_users: StartUsers,
) -> None:
    async with start_users(LOGIN_FAILURES_PER_IP="3/15minutes") as (_, stub):
        await stub.Register(users_pb2.RegisterRequest(email="joy@example.com", password=PASSWORD))
        for i in range(3):
            await wrong_password(stub, f"guess{i}@example.com", "203.0.113.9")
        stuffed = await too_many_attempts(stub, "joy@example.com", "203.0.113.9")
        assert 800 < retry_after(stuffed) <= 900
        assert (await login(stub, "joy@example.com", PASSWORD, "198.51.100.9")).user.email


# --- through the facade --------------------------------------------------------------------


@pytest.fixture
async def facade(
    make_config: Callable[..., RuntimeConfig],
    start_users: StartUsers,
    cache_environment: dict[str, str],
) -> AsyncIterator[Client]:
    """The real facade behind a trusted proxy (the test client, on loopback), in front of the
    real users server; the other services are down, which login does not need."""
    async with start_users() as users:
        env = {f"{name.upper()}_ADDRS": DEAD_ADDRESS for name in DOMAIN_SERVICES}
        env |= {"USERS_ADDRS": users.address, "TRUST_PROXY": "true", **cache_environment}
        config = load_facade_config(env, runtime=make_config("facade", **env))
        async with TestClient(TestServer(create_app(config))) as client:
            yield client


async def post_login(client: Client, email: str, password: str, forwarded: str) -> Any:
    response = await client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        headers={"X-Forwarded-For": forwarded},
    )
    return response.status, response.headers.get("Retry-After"), await response.json()


async def test_a_thousand_failed_logins_from_one_address_never_keep_the_victim_out(
    facade: Client,
) -> None:
    registered = await facade.post(
        "/api/v1/auth/register",
        json={"email": "victim@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.20"},
    )
    assert registered.status == 201, await registered.text()
    attacker = "203.0.113.66"
    halfway = asyncio.Event()
    answers: list[tuple[int, str, str | None]] = []

    async def attack() -> None:
        for i in range(1000):
            # A forged hop on the left each time: the right-most untrusted one is what counts.
            forged = f"10.{i // 256}.{i % 256}.1, {attacker}"
            status, retry, body = await post_login(facade, "victim@example.com", WRONG, forged)
            answers.append((status, body["error"], retry))
            if i == 500:
                halfway.set()

    async def victim() -> Any:
        await halfway.wait()
        return await post_login(facade, "victim@example.com", PASSWORD, "198.51.100.20")

    _, during = await asyncio.gather(attack(), victim())
    after = await post_login(facade, "victim@example.com", PASSWORD, "198.51.100.20")
    for status, _, body in (during, after):
        # The victim's first try, mid-attack and after it, is a success with a token.
        assert status == 200, body
        assert body["data"]["user"]["email"] == "victim@example.com"
        assert body["data"]["tokens"]["accessToken"]

    assert len(answers) == 1000
    assert all(status != 200 for status, _, _ in answers)
    assert answers[:5] == [(401, "INVALID_CREDENTIALS", None)] * 5
    refused = [(code, retry) for status, code, retry in answers if status == 429]
    assert len(refused) >= 950
    assert {code for code, _ in refused} <= {"TOO_MANY_ATTEMPTS", "RATE_LIMITED"}
    guard = [int(retry) for code, retry in refused if code == "TOO_MANY_ATTEMPTS" and retry]
    assert guard and all(1 <= seconds <= 900 for seconds in guard)
    assert {code for status, code, _ in answers if status == 401} == {"INVALID_CREDENTIALS"}
