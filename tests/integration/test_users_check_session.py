"""CheckSession through the real users server, on SQLite and PostgreSQL: a service that keeps a
user's token past its expiry (the terminal, for the shells of a user nobody has seen for an
hour) learns whether that token's session still stands, and nothing else. Before it, an expired
token could not be asked about at all, and a shell outlived its owner's logout everywhere. Asked
within a budget per account (SESSION_CHECKS_PER_USER) that our services' checks never reach and
a caller on the gRPC port, past the facade's limits, cannot go beyond; one budget over replicas
on Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import grpc
import jwt
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.auth import RemoteSessionChecker, bearer
from services.runtime.channels import create_channel
from services.runtime.config import RuntimeConfig
from services.runtime.context import Identity
from services.runtime.errors import Unavailable
from services.runtime.keys import SigningKey
from services.runtime.server import running
from services.runtime.sessions import USERS_SERVICE
from services.users.orm import sessions
from services.users.server import build as build_users
from tests.conftest import facade_credentials, users_codec
from tests.rpc_errors import expect_error, reason, retry_after

PASSWORD = "correct-horse-9"
# SESSION_CHECKS_PER_USER's default: CheckSession answers per account and minute.
CHECKS_PER_MINUTE = 600
LIVE = users_pb2.SESSION_STATE_LIVE
REVOKED = users_pb2.SESSION_STATE_REVOKED
EXPIRED = users_pb2.SESSION_STATE_EXPIRED


@pytest.fixture
async def stub(users_service: RuntimeConfig) -> AsyncIterator[users_pb2_grpc.UsersServiceStub]:
    async with grpc.aio.insecure_channel(users_service.addresses["users"][0]) as channel:
        yield users_pb2_grpc.UsersServiceStub(channel)


def lapsed(access_token: str) -> str:
    """The same login's access token, signed as the users service signs, expired a minute ago."""
    claims = jwt.decode(access_token, options={"verify_signature": False})
    token, expires = users_codec(access_ttl=-60).issue_access(
        user_id=claims["sub"], session_id=claims["sid"], email=claims["email"], roles=["user"]
    )
    assert expires < datetime.now(UTC)
    return token


async def check(
    stub: users_pb2_grpc.UsersServiceStub, token: str
) -> users_pb2.CheckSessionResponse:
    answer: users_pb2.CheckSessionResponse = await stub.CheckSession(
        users_pb2.CheckSessionRequest(), metadata=(bearer(token),)
    )
    return answer


def session_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sid"])


def identity_of(token: str) -> Identity:
    """Who a token names, as a service's interceptor reads it."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return Identity(
        user_id=claims["sub"],
        session_id=claims["sid"],
        email=claims["email"],
        roles=frozenset(claims["roles"]),
        token=token,
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
    )


async def test_an_expired_token_tells_its_session_live_then_logged_out(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    signed = await stub.Register(
        users_pb2.RegisterRequest(email="ann@example.com", password=PASSWORD)
    )
    other = await stub.Login(users_pb2.LoginRequest(email="ann@example.com", password=PASSWORD))
    old = lapsed(signed.tokens.access_token)
    answer = await check(stub, old)
    assert (answer.session_id, answer.state) == (session_of(old), LIVE)
    # The lapsed token asks, and that is all it does.
    refused = await expect_error(
        stub.GetMe(users_pb2.GetMeRequest(), metadata=(bearer(old),)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert reason(refused) == "TOKEN_EXPIRED"
    # Logged out on the other device: this one's session still stands.
    await stub.Logout(users_pb2.LogoutRequest(), metadata=(bearer(other.tokens.access_token),))
    assert (await check(stub, old)).state == LIVE
    assert (await check(stub, lapsed(other.tokens.access_token))).state == REVOKED
    # Logged out everywhere (with a fresh token of the first login, as a browser would refresh).
    fresh = await stub.Refresh(users_pb2.RefreshRequest(refresh_token=signed.tokens.refresh_token))
    logout = users_pb2.LogoutRequest(all_sessions=True)
    await stub.Logout(logout, metadata=(bearer(fresh.tokens.access_token),))
    answer = await check(stub, old)
    assert (answer.session_id, answer.state) == (session_of(old), REVOKED)


async def test_a_session_past_its_own_end_is_expired_not_revoked(
    stub: users_pb2_grpc.UsersServiceStub, users_database: str
) -> None:
    signed = await stub.Register(
        users_pb2.RegisterRequest(email="bea@example.com", password=PASSWORD)
    )
    token = signed.tokens.access_token
    engine = create_async_engine(users_database)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(sessions)
                .where(sessions.c.id == session_of(token))
                .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
            )
    finally:
        await engine.dispose()
    assert (await check(stub, lapsed(token))).state == EXPIRED


async def test_only_a_genuine_user_access_token_is_asked_about(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    signed = await stub.Register(
        users_pb2.RegisterRequest(email="cal@example.com", password=PASSWORD)
    )
    claims = jwt.decode(signed.tokens.access_token, options={"verify_signature": False})
    forger = users_codec(key=SigningKey.generate())  # the right shape, a key nobody trusts
    forged, _ = forger.issue_access(
        user_id=claims["sub"], session_id=claims["sid"], email=claims["email"], roles=["user"]
    )
    service = dict(facade_credentials("users").metadata())["authorization"].split()[1]
    for token, why in (
        (forged, "TOKEN_INVALID"),
        (signed.tokens.refresh_token, "TOKEN_INVALID"),  # a refresh token is not an access one
        (service, "TOKEN_INVALID"),  # a service acts for no session
        ("not-a-token", "TOKEN_INVALID"),
    ):
        error = await expect_error(check(stub, token), grpc.StatusCode.UNAUTHENTICATED)
        assert reason(error) == why, token[:20]
    error = await expect_error(
        stub.CheckSession(users_pb2.CheckSessionRequest()), grpc.StatusCode.UNAUTHENTICATED
    )
    assert reason(error) == "TOKEN_MISSING"


async def test_a_token_holder_calling_directly_is_refused_past_the_accounts_budget(
    stub: users_pb2_grpc.UsersServiceStub, users_service: RuntimeConfig
) -> None:
    """An attacker with a user's expired token, on the users service's gRPC port (no facade, so
    none of its limits): answered up to the budget, then RESOURCE_EXHAUSTED with when to come
    back. The budget is the account's: another login of it does not buy a fresh one, another
    account's checks are answered."""
    attacker = await stub.Register(
        users_pb2.RegisterRequest(email="eve@example.com", password=PASSWORD)
    )
    token = lapsed(attacker.tokens.access_token)
    for _ in range(CHECKS_PER_MINUTE):
        assert (await check(stub, token)).state == LIVE
    refused = await expect_error(check(stub, token), grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert reason(refused) == "RATE_LIMITED"
    assert 0 < retry_after(refused) <= 60
    again = await stub.Login(users_pb2.LoginRequest(email="eve@example.com", password=PASSWORD))
    await expect_error(
        check(stub, lapsed(again.tokens.access_token)), grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    # A service asking for this account meanwhile is told to retry, not that the session ended
    # (a stolen token spent on this costs its owner no logout).
    async with create_channel(users_service.addresses["users"], [USERS_SERVICE]) as channel:
        with pytest.raises(Unavailable):
            await RemoteSessionChecker(channel, ttl=2.0).is_live(identity_of(token))
    other = await stub.Register(
        users_pb2.RegisterRequest(email="fay@example.com", password=PASSWORD)
    )
    assert (await check(stub, lapsed(other.tokens.access_token))).state == LIVE


async def test_every_service_replica_checking_a_users_sessions_all_minute_is_never_refused(
    stub: users_pb2_grpc.UsersServiceStub, users_service: RuntimeConfig
) -> None:
    """Our services' own checks, as RemoteSessionChecker makes them, at the most they make: a
    user on two devices whose tokens have lapsed, asked about by 8 service replicas, each once
    per SESSION_CHECK_TTL (2 s) for a whole minute: 480 checks, every one answered."""
    first = await stub.Register(
        users_pb2.RegisterRequest(email="gus@example.com", password=PASSWORD)
    )
    second = await stub.Login(users_pb2.LoginRequest(email="gus@example.com", password=PASSWORD))
    logins = [identity_of(lapsed(s.tokens.access_token)) for s in (first, second)]
    async with contextlib.AsyncExitStack() as stack:
        replicas = []
        for _ in range(8):
            channel = create_channel(users_service.addresses["users"], [USERS_SERVICE])
            stack.push_async_callback(channel.close)
            # Remembering nothing: each round below is the next SESSION_CHECK_TTL's question.
            replicas.append(RemoteSessionChecker(channel, ttl=0.0))
        for _ in range(30):
            answers = await asyncio.gather(
                *(replica.is_live(login) for replica in replicas for login in logins)
            )
            assert answers == [True] * 16


async def test_replicas_on_redis_share_one_budget(
    make_config: Callable[..., RuntimeConfig], users_database: str, redis_url: str
) -> None:
    """Two users replicas on one Redis: an attacker spreading calls over both gets one budget
    (SESSION_CHECKS_PER_USER), not one per replica."""
    config = make_config(
        "users",
        USERS_DATABASE_URL=users_database,
        BCRYPT_COST="4",
        REDIS_URL=redis_url,
        SESSION_CHECKS_PER_USER="6/minute",
    )
    async with contextlib.AsyncExitStack() as stack:
        replicas = []
        for _ in range(2):
            users = await stack.enter_async_context(running(config, build_users, port=0, grace=0))
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{users.port}")
            stack.push_async_callback(channel.close)
            replicas.append(users_pb2_grpc.UsersServiceStub(channel))
        signed = await replicas[0].Register(
            users_pb2.RegisterRequest(email="hal@example.com", password=PASSWORD)
        )
        token = lapsed(signed.tokens.access_token)
        for call in range(6):
            assert (await check(replicas[call % 2], token)).state == LIVE
        for replica in replicas:
            refused = await expect_error(check(replica, token), grpc.StatusCode.RESOURCE_EXHAUSTED)
            assert 0 < retry_after(refused) <= 60
