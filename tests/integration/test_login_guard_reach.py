"""What the login guard covers, tried as an attacker on the users service's own gRPC port:
addresses by their block (an IPv6 /64 rotated through buys no fresh failures). Through the real
users server, on SQLite and PostgreSQL; bcrypt's own calls counted (a refused attempt makes
none)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.config import RuntimeConfig
from tests.bcrypt_calls import BcryptCalls
from tests.conftest import users_server
from tests.rpc_errors import expect_error, reason, retry_after

PASSWORD = "correct-horse-9"
WRONG = "wrong-horse-9"
OWNER = "198.51.100.1"
# LOGIN_FREE_FAILURES's default.
FREE_FAILURES = 5

Stub = users_pb2_grpc.UsersServiceStub


def calling(address: str, token: str | None = None) -> tuple[tuple[str, str], ...]:
    """A call as the facade makes it for a client at `address` (loopback is a trusted proxy),
    with `token` as its bearer."""
    bearer = (("authorization", f"Bearer {token}"),) if token else ()
    return (("x-forwarded-for", address), *bearer)


async def register(stub: Stub, email: str) -> users_pb2.RegisterResponse:
    request = users_pb2.RegisterRequest(email=email, password=PASSWORD)
    reply: users_pb2.RegisterResponse = await stub.Register(request, metadata=calling(OWNER))
    return reply


async def login(stub: Stub, email: str, address: str, password: str) -> users_pb2.LoginResponse:
    request = users_pb2.LoginRequest(email=email, password=password)
    reply: users_pb2.LoginResponse = await stub.Login(request, metadata=calling(address))
    return reply


async def wrong(call: Any) -> None:
    """A password that did not match: a plain INVALID_CREDENTIALS."""
    error = await expect_error(call, grpc.StatusCode.UNAUTHENTICATED)
    assert reason(error) == "INVALID_CREDENTIALS"


async def too_many_attempts(call: Any, what: str) -> float:
    """A call the guard refused, its message naming `what`; the seconds it asks to wait."""
    error = await expect_error(call, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert reason(error) == "TOO_MANY_ATTEMPTS"
    assert what in (error.details() or ""), error.details()
    return retry_after(error)


async def test_rotating_addresses_within_an_ipv6_64_buys_no_fresh_failed_logins(
    make_config: Callable[..., RuntimeConfig], users_database: str, bcrypt_calls: BcryptCalls
) -> None:
    async with users_server(make_config, users_database) as stub:
        await register(stub, "zoe@example.com")
        # Each guess from another address of one /64: together, one address's free failures.
        for n in range(1, FREE_FAILURES + 2):
            await wrong(login(stub, "zoe@example.com", f"2001:db8:0:1::{n}", WRONG))
        before = bcrypt_calls.count
        wait = await too_many_attempts(
            login(stub, "zoe@example.com", "2001:db8:0:1:ffff:ffff:ffff:ffff", PASSWORD),
            "for this account from this address",
        )
        assert 0 < wait <= 1.0
        assert bcrypt_calls.count == before
        # The next /64 is another address: its first try is checked.
        assert (await login(stub, "zoe@example.com", "2001:db8:0:2::1", PASSWORD)).user.email


async def test_rotating_within_an_ipv6_64_across_accounts_fills_one_addresss_failures(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    async with users_server(
        make_config, users_database, LOGIN_FAILURES_PER_IP="3/15minutes"
    ) as stub:
        await register(stub, "amy@example.com")
        for n in range(3):  # credential stuffing, a fresh address of the /64 for each guess
            await wrong(login(stub, f"guess{n}@example.com", f"2001:db8:5:6::{n + 1}", WRONG))
        wait = await too_many_attempts(
            login(stub, "amy@example.com", "2001:db8:5:6::99", PASSWORD),
            "failed logins from this address",
        )
        assert 800 < wait <= 900
