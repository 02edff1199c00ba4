"""An attacker on the users service's own gRPC port, past the facade's limits: registrations per
address, successful logins per account and per address (email changes and deletions that gave
the password with them), refreshes and password changes per account, each refused past its
budget with RESOURCE_EXHAUSTED, RATE_LIMITED and when to come back, before the bcrypt hash or
the write it would have cost; through the real facade, 429 with Retry-After. Through the real
users server, on SQLite and PostgreSQL; one budget over two replicas on Redis."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from facade.app import create_app
from facade.config import load_facade_config
from services.runtime.config import DOMAIN_SERVICES, RuntimeConfig
from services.runtime.server import running
from services.users.server import build as build_users
from tests.bcrypt_calls import BcryptCalls
from tests.conftest import users_server
from tests.rpc_errors import expect_error, reason, retry_after
from tests.waiting import until_async

PASSWORD = "correct-horse-9"
WRONG = "wrong-horse-9"
ATTACKER = "203.0.113.66"
# The defaults: REGISTRATIONS_PER_IP (an hour), LOGINS_PER_ACCOUNT and REFRESHES_PER_ACCOUNT
# (a minute).
REGISTRATIONS_PER_HOUR = 100
LOGINS_PER_MINUTE = 60
REFRESHES_PER_MINUTE = 60
# PASSWORD_CHANGES_PER_ACCOUNT's default (an hour).
PASSWORD_CHANGES_PER_HOUR = 10
# Nothing listens here: the services the facade test does not need.
DEAD_ADDRESS = "127.0.0.1:1"

Stub = users_pb2_grpc.UsersServiceStub
Client = TestClient[web.Request, web.Application]


def from_address(address: str) -> tuple[tuple[str, str], ...]:
    """A call as the facade makes it for a client at `address` (loopback is a trusted proxy)."""
    return (("x-forwarded-for", address),)


async def register(stub: Stub, email: str, address: str) -> users_pb2.RegisterResponse:
    request = users_pb2.RegisterRequest(email=email, password=PASSWORD)
    reply: users_pb2.RegisterResponse = await stub.Register(request, metadata=from_address(address))
    return reply


async def login(
    stub: Stub, email: str, address: str, password: str = PASSWORD
) -> users_pb2.LoginResponse:
    request = users_pb2.LoginRequest(email=email, password=password)
    reply: users_pb2.LoginResponse = await stub.Login(request, metadata=from_address(address))
    return reply


async def refresh(stub: Stub, token: str) -> users_pb2.RefreshResponse:
    reply: users_pb2.RefreshResponse = await stub.Refresh(
        users_pb2.RefreshRequest(refresh_token=token)
    )
    return reply


async def change_password(
    stub: Stub, signed: users_pb2.RegisterResponse, current: str, new: str, address: str
) -> users_pb2.UpdateUserResponse:
    """A change of `signed`'s password with its own token, giving `current`."""
    request = users_pb2.UpdateUserRequest(
        id=signed.user.id, current_password=current, new_password=new
    )
    metadata = (*from_address(address), ("authorization", f"Bearer {signed.tokens.access_token}"))
    reply: users_pb2.UpdateUserResponse = await stub.UpdateUser(request, metadata=metadata)
    return reply


async def change_email(
    stub: Stub, signed: users_pb2.RegisterResponse, email: str, current: str, address: str
) -> users_pb2.UpdateUserResponse:
    """A change of `signed`'s email with its own token, giving `current`."""
    request = users_pb2.UpdateUserRequest(id=signed.user.id, email=email, current_password=current)
    metadata = (*from_address(address), ("authorization", f"Bearer {signed.tokens.access_token}"))
    reply: users_pb2.UpdateUserResponse = await stub.UpdateUser(request, metadata=metadata)
    return reply


async def delete_account(
    stub: Stub, signed: users_pb2.RegisterResponse, current: str, address: str
) -> None:
    """A deletion of `signed`'s account with its own token, giving `current`."""
    request = users_pb2.DeleteUserRequest(id=signed.user.id, current_password=current)
    metadata = (*from_address(address), ("authorization", f"Bearer {signed.tokens.access_token}"))
    await stub.DeleteUser(request, metadata=metadata)


async def refused(call: Awaitable[Any], what: str) -> grpc.aio.AioRpcError:
    """A call refused for a spent budget, the message naming `what`; the error, for its delay."""
    error = await expect_error(call, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert reason(error) == "RATE_LIMITED"
    assert f"too many {what}" in (error.details() or "")
    return error


async def test_registrations_from_one_address_past_its_budget_hash_and_write_nothing(
    make_config: Callable[..., RuntimeConfig], users_database: str, bcrypt_calls: BcryptCalls
) -> None:
    async with users_server(make_config, users_database) as stub:
        for n in range(REGISTRATIONS_PER_HOUR):
            await register(stub, f"bot{n}@example.com", ATTACKER)
        before = bcrypt_calls.count
        for n in range(5):
            error = await refused(
                register(stub, f"more{n}@example.com", ATTACKER), "registrations from this address"
            )
            assert 3500 < retry_after(error) <= 3600
        assert bcrypt_calls.count == before, "a refused registration hashes no password"
        # Nothing was written for it (the email is free), and another address registers.
        elsewhere = await register(stub, "more0@example.com", "198.51.100.7")
        assert elsewhere.user.email == "more0@example.com"


async def test_rotating_addresses_within_an_ipv6_64_buys_no_fresh_registrations(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    async with users_server(make_config, users_database, REGISTRATIONS_PER_IP="2/hour") as stub:
        await register(stub, "v6a@example.com", "2001:db8:0:1::1")
        await register(stub, "v6b@example.com", "2001:db8:0:1::2")
        await refused(
            register(stub, "v6c@example.com", "2001:db8:0:1::ffff"),
            "registrations from this address",
        )
        assert (await register(stub, "v6c@example.com", "2001:db8:0:2::1")).user.id


async def test_an_untrusted_caller_forging_its_address_spends_its_own_registrations(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    # Only the listed proxies may name the client's address; loopback callers here are not one.
    async with users_server(
        make_config, users_database, REGISTRATIONS_PER_IP="2/hour", TRUSTED_PROXIES="10.0.0.0/8"
    ) as stub:
        for n in range(2):
            await register(stub, f"forger{n}@example.com", f"192.0.2.{n}")
        await refused(
            register(stub, "forger2@example.com", "192.0.2.2"), "registrations from this address"
        )


async def test_successful_logins_to_one_account_past_its_budget_are_refused_unchecked(
    make_config: Callable[..., RuntimeConfig], users_database: str, bcrypt_calls: BcryptCalls
) -> None:
    """The account's budget, from however many addresses; refused before the password's bcrypt
    check, the right password or a wrong one; another account answered meanwhile."""
    async with users_server(make_config, users_database) as stub:
        await register(stub, "eve@example.com", "198.51.100.1")
        await register(stub, "fay@example.com", "198.51.100.1")
        for n in range(LOGINS_PER_MINUTE):
            await login(stub, "eve@example.com", f"203.0.113.{n}")
        before = bcrypt_calls.count
        for n in range(5):
            error = await refused(
                login(stub, "eve@example.com", f"192.0.2.{n}"), "logins to this account"
            )
            assert 0 < retry_after(error) <= 60
        await refused(login(stub, "eve@example.com", "192.0.2.9", WRONG), "logins to this account")
        assert bcrypt_calls.count == before, "a refused login checks no password"
        fay = await login(stub, "fay@example.com", "203.0.113.0")
        assert fay.user.email == "fay@example.com"


async def test_failed_logins_from_anywhere_spend_nothing_of_the_accounts_budget(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    """Nobody locks an account's owner out without their password: only successes spend."""
    async with users_server(make_config, users_database, LOGINS_PER_ACCOUNT="3/minute") as stub:
        await register(stub, "gil@example.com", "198.51.100.1")
        for n in range(10):  # guesses from ten addresses, one each (the guard never slows them)
            error = await expect_error(
                login(stub, "gil@example.com", f"203.0.113.{n}", WRONG),
                grpc.StatusCode.UNAUTHENTICATED,
            )
            assert reason(error) == "INVALID_CREDENTIALS"
        for _ in range(3):
            assert (await login(stub, "gil@example.com", "198.51.100.1")).user.email
        await refused(login(stub, "gil@example.com", "198.51.100.1"), "logins to this account")


async def test_successful_logins_from_one_address_past_its_budget_are_refused_for_any_account(
    make_config: Callable[..., RuntimeConfig], users_database: str, bcrypt_calls: BcryptCalls
) -> None:
    """Accounts an attacker holds each have their own budget: the address's bounds them all."""
    async with users_server(make_config, users_database, LOGINS_PER_IP="4/15minutes") as stub:
        held = ["hal@example.com", "ida@example.com"]
        for email in held:
            await register(stub, email, "198.51.100.1")
        for n in range(4):
            await login(stub, held[n % 2], ATTACKER)
        before = bcrypt_calls.count
        error = await refused(login(stub, held[0], ATTACKER), "logins from this address")
        assert 800 < retry_after(error) <= 900
        # An email no account has, refused as soon: not even the decoy check runs.
        await refused(login(stub, "nobody@example.com", ATTACKER), "logins from this address")
        assert bcrypt_calls.count == before
        assert (await login(stub, held[0], "198.51.100.2")).user.email == held[0]


async def test_refreshes_of_one_account_past_its_budget_are_refused(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    async with users_server(make_config, users_database) as stub:
        jon = await register(stub, "jon@example.com", "198.51.100.1")
        kim = await register(stub, "kim@example.com", "198.51.100.1")
        token = jon.tokens.refresh_token
        for _ in range(REFRESHES_PER_MINUTE):
            token = (await refresh(stub, token)).tokens.refresh_token
        error = await refused(refresh(stub, token), "token refreshes for this account")
        assert 0 < retry_after(error) <= 60
        # Another login buys no fresh budget; another account refreshes.
        again = await login(stub, "jon@example.com", "198.51.100.1")
        await refused(refresh(stub, again.tokens.refresh_token), "token refreshes")
        assert (await refresh(stub, kim.tokens.refresh_token)).tokens.access_token


async def test_a_refused_refresh_spends_nothing_and_its_token_works_once_the_window_ends(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    """Refused before anything is written: had the token been spent, presenting it again would
    end its session as a stolen one (REFRESH_TOKEN_REUSED), a limit turned into a logout."""
    async with users_server(
        make_config, users_database, REFRESHES_PER_ACCOUNT="1/2seconds"
    ) as stub:
        signed = await register(stub, "lea@example.com", "198.51.100.1")
        token = (await refresh(stub, signed.tokens.refresh_token)).tokens.refresh_token
        await refused(refresh(stub, token), "token refreshes")
        renewed: list[users_pb2.RefreshResponse] = []

        async def answered() -> bool:
            with contextlib.suppress(grpc.aio.AioRpcError):
                renewed.append(await refresh(stub, token))
            return bool(renewed)

        await until_async(answered, "the refused token to be taken once the window ended")
        me = await stub.GetMe(
            users_pb2.GetMeRequest(),
            metadata=(("authorization", f"Bearer {renewed[0].tokens.access_token}"),),
        )
        assert me.user.email == "lea@example.com"


async def test_password_changes_of_one_account_past_its_budget_are_refused_unchecked(
    make_config: Callable[..., RuntimeConfig], users_database: str, bcrypt_calls: BcryptCalls
) -> None:
    """Each change checks the current password and hashes the new one. Only changes that gave
    the right current password spend the budget, the wrong ones are the guard's; past it, the
    right one and a wrong one are refused before either bcrypt call. An admin's reset of the
    account is never refused: whoever spent the budget must not keep the admin from it."""
    home = "198.51.100.1"
    async with users_server(make_config, users_database) as stub:
        admin = await register(stub, "ann@example.com", home)  # the first account: an admin
        mia = await register(stub, "mia@example.com", home)
        for _ in range(3):  # fewer than the guard's free failures
            error = await expect_error(
                change_password(stub, mia, WRONG, "never-set-1", home),
                grpc.StatusCode.UNAUTHENTICATED,
            )
            assert reason(error) == "INVALID_CREDENTIALS"
        current = PASSWORD
        for n in range(PASSWORD_CHANGES_PER_HOUR):
            await change_password(stub, mia, current, f"changed-{n}-pass", home)
            current = f"changed-{n}-pass"
        before = bcrypt_calls.count
        error = await refused(
            change_password(stub, mia, current, "one-more-1", home),
            "password changes for this account",
        )
        assert 3500 < retry_after(error) <= 3600
        await refused(change_password(stub, mia, WRONG, "one-more-1", ATTACKER), "password changes")
        assert bcrypt_calls.count == before, "a refused change checks and hashes nothing"
        assert (await login(stub, "mia@example.com", home, current)).user.id == mia.user.id
        reset = users_pb2.UpdateUserRequest(id=mia.user.id, new_password="reset-by-admin-1")
        await stub.UpdateUser(
            reset, metadata=(("authorization", f"Bearer {admin.tokens.access_token}"),)
        )
        assert (await login(stub, "mia@example.com", home, "reset-by-admin-1")).user.email


async def test_email_changes_and_deletions_giving_the_password_spend_the_accounts_logins(
    make_config: Callable[..., RuntimeConfig], users_database: str, bcrypt_calls: BcryptCalls
) -> None:
    """A change of one's own email, or a deletion of one's own account, checks the current
    password as a login does and counts as one: past LOGINS_PER_ACCOUNT, refused before the
    check. An admin's change of the account checks nothing and is not refused."""
    home = "198.51.100.1"
    async with users_server(make_config, users_database, LOGINS_PER_ACCOUNT="3/hour") as stub:
        admin = await register(stub, "ann@example.com", home)  # the first account: an admin
        noa = await register(stub, "noa@example.com", home)
        await login(stub, "noa@example.com", home)
        for n in range(2):
            await change_email(stub, noa, f"noa{n}@example.com", PASSWORD, home)
        before = bcrypt_calls.count
        error = await refused(
            change_email(stub, noa, "noa9@example.com", PASSWORD, home), "logins to this account"
        )
        assert 3500 < retry_after(error) <= 3600
        # The refusal says what was refused: no login was tried.
        said = error.details() or ""
        assert said.startswith("email change refused: too many logins to this account"), said
        assert "(an email change counts as one)" in said
        deletion = await refused(
            delete_account(stub, noa, PASSWORD, home), "logins to this account"
        )
        said = deletion.details() or ""
        assert said.startswith("account deletion refused: too many logins to this account"), said
        assert bcrypt_calls.count == before, "a refused change checks nothing"
        moved = await stub.UpdateUser(
            users_pb2.UpdateUserRequest(id=noa.user.id, email="noa.back@example.com"),
            metadata=(("authorization", f"Bearer {admin.tokens.access_token}"),),
        )
        assert moved.user.email == "noa.back@example.com"


async def test_replicas_on_redis_share_each_budget(
    make_config: Callable[..., RuntimeConfig], users_database: str, redis_url: str
) -> None:
    """Two users replicas on one Redis: calls spread over both get one budget, not two."""
    config = make_config(
        "users",
        USERS_DATABASE_URL=users_database,
        BCRYPT_COST="4",
        REDIS_URL=redis_url,
        REGISTRATIONS_PER_IP="4/hour",
        LOGINS_PER_ACCOUNT="4/minute",
        REFRESHES_PER_ACCOUNT="4/minute",
    )
    async with contextlib.AsyncExitStack() as stack:
        replicas: list[Stub] = []
        for _ in range(2):
            users = await stack.enter_async_context(running(config, build_users, port=0, grace=0))
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{users.port}")
            stack.push_async_callback(channel.close)
            replicas.append(users_pb2_grpc.UsersServiceStub(channel))
        signed = [await register(replicas[n % 2], f"r{n}@example.com", ATTACKER) for n in range(4)]
        for replica in replicas:
            await refused(register(replica, "r9@example.com", ATTACKER), "registrations")
        for n in range(4):
            await login(replicas[n % 2], "r0@example.com", "198.51.100.1")
        token = signed[1].tokens.refresh_token
        for n in range(4):
            token = (await refresh(replicas[n % 2], token)).tokens.refresh_token
        for replica in replicas:
            await refused(login(replica, "r0@example.com", "198.51.100.1"), "logins")
            await refused(refresh(replica, token), "token refreshes")


# --- through the facade --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def facade_in_front(
    make_config: Callable[..., RuntimeConfig], users_database: str, **users_environ: str
) -> AsyncIterator[Client]:
    """The real facade behind a trusted proxy (the test client, on loopback), its own auth limit
    off, so that every 429 is the users service's; the other services are down."""
    config = make_config(
        "users", USERS_DATABASE_URL=users_database, BCRYPT_COST="4", **users_environ
    )
    async with running(config, build_users, port=0, grace=0) as users:
        env = {f"{name.upper()}_ADDRS": DEAD_ADDRESS for name in DOMAIN_SERVICES}
        env |= {
            "USERS_ADDRS": f"127.0.0.1:{users.port}",
            "TRUST_PROXY": "true",
            "RATE_LIMIT_AUTH": "0",
        }
        facade = load_facade_config(env, runtime=make_config("facade", **env))
        async with TestClient(TestServer(create_app(facade))) as client:
            yield client


async def post(client: Client, path: str, body: dict[str, str], address: str) -> Any:
    response = await client.post(path, json=body, headers={"X-Forwarded-For": address})
    return response.status, response.headers.get("Retry-After"), await response.json()


def assert_users_refusal(answer: Any, longest: int) -> None:
    """A 429 from the users service's budget, with when to retry in the header and the body."""
    status, retry, body = answer
    assert (status, body["error"], body["service"]) == (429, "RATE_LIMITED", "users"), body
    assert retry is not None and 1 <= int(retry) <= longest
    assert body["details"]["retryAfter"] == int(retry)


async def test_through_the_facade_a_spent_budget_is_429_with_retry_after(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    register_path, login_path = "/api/v1/auth/register", "/api/v1/auth/login"
    async with facade_in_front(
        make_config, users_database, LOGINS_PER_ACCOUNT="2/minute"
    ) as client:
        for n in range(REGISTRATIONS_PER_HOUR):
            body = {"email": f"web{n}@example.com", "password": PASSWORD}
            status, _, answer = await post(client, register_path, body, ATTACKER)
            assert status == 201, answer
        more = {"email": "web-more@example.com", "password": PASSWORD}
        assert_users_refusal(await post(client, register_path, more, ATTACKER), 3600)
        status, _, _ = await post(client, register_path, more, "198.51.100.30")
        assert status == 201

        credentials = {"email": "web0@example.com", "password": PASSWORD}
        for _ in range(2):
            status, _, answer = await post(client, login_path, credentials, "198.51.100.31")
            assert status == 200, answer
        assert_users_refusal(await post(client, login_path, credentials, "198.51.100.31"), 60)
