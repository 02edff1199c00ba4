"""A session check during a rolling upgrade: a users service of the earlier release has no
CheckSession (UNIMPLEMENTED). A token within 30 s of its expiry, which now asks with
CheckSession, must still be answered by ValidateToken there, not refused as "cannot verify"
(every service's callers would get 503s in the last 30 s of each token); one already expired
gets no answer (Unavailable), never a logout."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.auth import RemoteSessionChecker
from services.runtime.context import Identity
from services.runtime.errors import Unavailable


class EarlierUsers(users_pb2_grpc.UsersServiceServicer):
    """The earlier release's answer to ValidateToken; CheckSession is UNIMPLEMENTED."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def ValidateToken(
        self, request: users_pb2.ValidateTokenRequest, context: grpc.aio.ServicerContext
    ) -> users_pb2.ValidateTokenResponse:
        self.asked.append("ValidateToken")
        return users_pb2.ValidateTokenResponse(valid=True, user_id="user_1", session_id="s1")


@pytest.fixture
async def earlier() -> AsyncIterator[tuple[EarlierUsers, grpc.aio.Channel]]:
    server = grpc.aio.server()
    servicer = EarlierUsers()
    users_pb2_grpc.add_UsersServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield servicer, channel
    finally:
        await server.stop(0)


def identity(expires_in: float) -> Identity:
    return Identity(
        user_id="user_1",
        session_id="s1",
        email="",
        roles=frozenset({"user"}),
        token="a-token",
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
    )


async def test_a_token_about_to_expire_is_still_answered_by_an_earlier_users_service(
    earlier: tuple[EarlierUsers, grpc.aio.Channel],
) -> None:
    servicer, channel = earlier
    checker = RemoteSessionChecker(channel, ttl=0.0)
    assert await checker.is_live(identity(expires_in=10)) is True
    assert servicer.asked == ["ValidateToken"]


async def test_an_expired_token_gets_no_answer_from_an_earlier_users_service(
    earlier: tuple[EarlierUsers, grpc.aio.Channel],
) -> None:
    servicer, channel = earlier
    checker = RemoteSessionChecker(channel, ttl=0.0)
    with pytest.raises(Unavailable):
        await checker.is_live(identity(expires_in=-60))
    assert servicer.asked == []
