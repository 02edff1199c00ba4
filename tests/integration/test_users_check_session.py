"""CheckSession through the real users server, on SQLite and PostgreSQL: a service that keeps a
user's token past its expiry (the terminal, for the shells of a user nobody has seen for an
hour) learns whether that token's session still stands, and nothing else. Before it, an expired
token could not be asked about at all, and a shell outlived its owner's logout everywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import jwt
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.auth import bearer
from services.runtime.config import RuntimeConfig
from services.runtime.keys import SigningKey
from services.users.orm import sessions
from tests.conftest import facade_credentials, users_codec
from tests.rpc_errors import expect_error, reason

PASSWORD = "correct-horse-9"
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
    return await stub.CheckSession(users_pb2.CheckSessionRequest(), metadata=(bearer(token),))


def session_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sid"])


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
