"""What the login guard covers, tried as an attacker on the users service's own gRPC port: the
current password a password change must give (a stolen access token is no password, and must
buy no more guesses than Login gives), and addresses by their block (an IPv6 /64 rotated through
buys no fresh failures). Through the real users server, on SQLite and PostgreSQL; bcrypt's own
calls counted (a refused attempt makes none); through the real facade, 429 with Retry-After."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.config import RuntimeConfig
from services.runtime.server import running
from services.users.server import build as build_users
from tests.bcrypt_calls import BcryptCalls
from tests.conftest import users_server
from tests.integration.conftest import FacadeInFront
from tests.rpc_errors import expect_error, reason, retry_after
from tests.waiting import until_async

PASSWORD = "correct-horse-9"
WRONG = "wrong-horse-9"
NEW = "battery-staple-7"
OWNER = "198.51.100.1"
THIEF = "203.0.113.66"
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


async def change_password(
    stub: Stub, signed: users_pb2.RegisterResponse, address: str, current: str, new: str = NEW
) -> users_pb2.UpdateUserResponse:
    """UpdateUser with a new password, by whoever holds `signed`'s access token, from `address`."""
    request = users_pb2.UpdateUserRequest(
        id=signed.user.id, current_password=current, new_password=new
    )
    reply: users_pb2.UpdateUserResponse = await stub.UpdateUser(
        request, metadata=calling(address, signed.tokens.access_token)
    )
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


async def test_a_stolen_token_guessing_the_current_password_is_slowed_as_a_login_guesser_is(
    make_config: Callable[..., RuntimeConfig], users_database: str, bcrypt_calls: BcryptCalls
) -> None:
    async with users_server(make_config, users_database) as stub:
        victim = await register(stub, "vic@example.com")
        # The free failures, then the one that starts a 1 s wait: each a plain 401.
        for _ in range(FREE_FAILURES + 1):
            await wrong(change_password(stub, victim, THIEF, WRONG))
        before = bcrypt_calls.count
        # Even the right current password waits, unchecked; so do this address's logins there.
        wait = await too_many_attempts(
            change_password(stub, victim, THIEF, PASSWORD), "for this account from this address"
        )
        assert 0 < wait <= 1.0
        await too_many_attempts(login(stub, "vic@example.com", THIEF, PASSWORD), "this address")
        assert bcrypt_calls.count == before, "a refused attempt runs no bcrypt"

        # The wait over, one more guess is checked and doubles it; the refusals polled for meanwhile
        # checked nothing.
        checked: list[grpc.StatusCode] = []

        async def guessed() -> bool:
            try:
                await change_password(stub, victim, THIEF, WRONG)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    checked.append(error.code())
            return bool(checked)

        await until_async(guessed, "the thief's wait to end")
        assert checked == [grpc.StatusCode.UNAUTHENTICATED]
        assert bcrypt_calls.count == before + 1
        wait = await too_many_attempts(
            change_password(stub, victim, THIEF, WRONG), "for this account from this address"
        )
        assert 1.0 < wait <= 2.0

        # The owner, from their own address, is slowed by none of it.
        owner = await login(stub, "vic@example.com", OWNER, PASSWORD)
        assert owner.user.id == victim.user.id
        changed = await change_password(stub, victim, OWNER, PASSWORD)
        assert changed.user.id == victim.user.id
        assert (await login(stub, "vic@example.com", OWNER, NEW)).user.id == victim.user.id


async def test_wrong_current_passwords_and_failed_logins_are_one_count(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    """Guessing at Login and through a password change in turn gets the free failures once."""
    async with users_server(make_config, users_database) as stub:
        victim = await register(stub, "una@example.com")
        for n in range(FREE_FAILURES + 1):
            if n % 2:
                await wrong(login(stub, "una@example.com", THIEF, WRONG))
            else:
                await wrong(change_password(stub, victim, THIEF, WRONG))
        await too_many_attempts(login(stub, "una@example.com", THIEF, PASSWORD), "this address")
        await too_many_attempts(change_password(stub, victim, THIEF, PASSWORD), "this address")


async def test_a_new_email_buys_a_thief_no_fresh_failures(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    """A token changes its account's email without the password; failures follow the account."""
    async with users_server(make_config, users_database) as stub:
        victim = await register(stub, "wes@example.com")
        for _ in range(FREE_FAILURES + 1):
            await wrong(change_password(stub, victim, THIEF, WRONG))
        await stub.UpdateUser(
            users_pb2.UpdateUserRequest(id=victim.user.id, email="thief@example.com"),
            metadata=calling(THIEF, victim.tokens.access_token),
        )
        await too_many_attempts(change_password(stub, victim, THIEF, WRONG), "this address")
        await too_many_attempts(login(stub, "thief@example.com", THIEF, PASSWORD), "this address")


async def test_failing_addresses_past_the_accounts_ceiling_wait_at_once_and_the_owner_never(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    """A token guessing from many addresses fills the account's ceiling as logins do; its owner,
    from an address that never failed, logs in and changes the password at once."""
    async with users_server(
        make_config, users_database, LOGIN_FAILURES_PER_ACCOUNT="3/15minutes"
    ) as stub:
        victim = await register(stub, "xia@example.com")
        for n in range(4):  # four addresses, one failure each: the fourth passes the ceiling
            await wrong(change_password(stub, victim, f"192.0.2.{n}", WRONG))
        wait = await too_many_attempts(
            change_password(stub, victim, "192.0.2.3", WRONG), "this address"
        )
        assert 0 < wait <= 1.0
        assert (await login(stub, "xia@example.com", OWNER, PASSWORD)).user.id == victim.user.id
        assert (await change_password(stub, victim, OWNER, PASSWORD)).user.id == victim.user.id


async def test_wrong_current_passwords_across_accounts_refuse_the_address_for_the_window(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    """Tokens of several accounts, each guessed a little: the address's failures add up."""
    async with users_server(
        make_config, users_database, LOGIN_FAILURES_PER_IP="3/15minutes"
    ) as stub:
        stolen = [await register(stub, f"y{n}@example.com") for n in range(3)]
        for signed in stolen:
            await wrong(change_password(stub, signed, THIEF, WRONG))
        wait = await too_many_attempts(
            change_password(stub, stolen[0], THIEF, PASSWORD), "failed logins from this address"
        )
        assert 800 < wait <= 900
        assert (await login(stub, "y0@example.com", OWNER, PASSWORD)).user.id == stolen[0].user.id


async def test_rotating_addresses_within_an_ipv6_64_buys_no_fresh_failed_logins(
    make_config: Callable[..., RuntimeConfig], users_database: str, bcrypt_calls: BcryptCalls
) -> None:
    async with users_server(make_config, users_database) as stub:
        victim = await register(stub, "zoe@example.com")
        # Each guess from another address of one /64: together, one address's free failures.
        for n in range(1, FREE_FAILURES + 2):
            await wrong(login(stub, "zoe@example.com", f"2001:db8:0:1::{n}", WRONG))
        before = bcrypt_calls.count
        wait = await too_many_attempts(
            login(stub, "zoe@example.com", "2001:db8:0:1:ffff:ffff:ffff:ffff", PASSWORD),
            "for this account from this address",
        )
        assert 0 < wait <= 1.0
        await too_many_attempts(
            change_password(stub, victim, "2001:db8:0:1::abcd", PASSWORD), "this address"
        )
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


# --- through the facade --------------------------------------------------------------------


async def test_through_the_facade_a_guessed_current_password_is_429_too_many_attempts(
    make_config: Callable[..., RuntimeConfig],
    users_database: str,
    facade_in_front: FacadeInFront,
) -> None:
    config = make_config("users", USERS_DATABASE_URL=users_database, BCRYPT_COST="4")
    async with running(config, build_users, port=0, grace=0) as users:
        addresses = {"users": f"127.0.0.1:{users.port}"}
        async with facade_in_front(addresses, TRUST_PROXY="true") as client:
            registered = await client.post(
                "/api/v1/auth/register",
                json={"email": "ben@example.com", "password": PASSWORD},
                headers={"X-Forwarded-For": OWNER},
            )
            assert registered.status == 201, await registered.text()
            signed = (await registered.json())["data"]
            path = f"/api/v1/users/{signed['user']['id']}"
            headers = {
                "Authorization": f"Bearer {signed['tokens']['accessToken']}",
                "X-Forwarded-For": THIEF,
            }
            guess = {"currentPassword": WRONG, "newPassword": NEW}
            answers = []
            for _ in range(FREE_FAILURES + 2):
                response = await client.put(path, json=guess, headers=headers)
                body = await response.json()
                answers.append(
                    (response.status, body["error"], response.headers.get("Retry-After"))
                )
            assert answers[:-1] == [(401, "INVALID_CREDENTIALS", None)] * (FREE_FAILURES + 1)
            assert answers[-1] == (429, "TOO_MANY_ATTEMPTS", "1")
