"""A refusal of a token is no answer about its session (answers are remembered per session).

A session check in a rolling upgrade, through a real users server of the earlier release's
behaviour (CheckSession UNIMPLEMENTED) reached with some latency: a token within 30 s of its
expiry asks CheckSession, is told UNIMPLEMENTED, and falls back to ValidateToken; when the token
expires on the way, users refuses it TOKEN_EXPIRED. That says nothing about the session: it
must not read as a logout (False, remembered for the whole session: every service's callers
told SESSION_REVOKED, which the web client takes as "signed out", and the terminal's recheck
ending the shells of a user who is still logged in)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable

import grpc
import jwt
import pytest
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.auth import RemoteSessionChecker, bearer
from services.runtime.config import RuntimeConfig
from services.runtime.errors import Unauthenticated, Unavailable
from services.runtime.keys import SigningKey
from services.runtime.server import running
from services.users.server import build as build_users
from services.users.servicer import UsersServicer
from tests.conftest import users_codec

PASSWORD = "correct-horse-9"
LATENCY = 0.4


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@contextlib.asynccontextmanager
async def slow_link(upstream_port: int, delay: float) -> AsyncIterator[int]:
    """A TCP hop to 127.0.0.1:`upstream_port` that holds every chunk `delay` seconds each way
    (a users replica across a slow network); yields its own port."""
    tasks: set[asyncio.Task[None]] = set()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                await asyncio.sleep(delay)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream_port)
        for task in (
            asyncio.create_task(pump(client_r, server_w)),
            asyncio.create_task(pump(server_r, client_w)),
        ):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


@pytest.fixture
async def earlier_users(
    make_config: Callable[..., RuntimeConfig],
    users_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[int]:
    """The real users server, with CheckSession as the earlier release answers it."""
    monkeypatch.setattr(
        UsersServicer, "CheckSession", users_pb2_grpc.UsersServiceServicer.CheckSession
    )
    config = make_config(
        "users", USERS_DATABASE_URL=users_database, BCRYPT_COST="4", ACCESS_TOKEN_TTL="5"
    )
    async with running(config, build_users, port=0, grace=0) as service:
        yield service.port


async def test_a_token_expiring_on_the_way_to_an_earlier_users_service_is_no_logout(
    earlier_users: int,
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{earlier_users}") as direct:
        users = users_pb2_grpc.UsersServiceStub(direct)
        await users.Register(users_pb2.RegisterRequest(email="ann@example.com", password=PASSWORD))
        signed = await users.Login(
            users_pb2.LoginRequest(email="ann@example.com", password=PASSWORD)
        )
    verifier = users_codec()
    identity = verifier.read_access(signed.tokens.access_token)
    async with (
        slow_link(earlier_users, LATENCY) as port,
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        checker = RemoteSessionChecker(channel, ttl=5.0, deadline=5.0)
        await channel.channel_ready()
        exp = int(jwt.decode(identity.token, options={"verify_signature": False})["exp"])
        await asyncio.sleep(max(0.0, exp - LATENCY - time.time()))
        assert identity.expires_at.timestamp() > time.time()  # it still works when asked
        try:
            answer = await checker.is_live(identity)
        except (Unauthenticated, Unavailable) as error:
            # No answer, or "your token expired" (refresh it): neither ends anything.
            assert getattr(error, "reason", "") != "SESSION_REVOKED"
        else:
            assert answer is True
        # The session stands: its next token (a browser refreshing), asked within the memo's
        # time, is live.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{earlier_users}") as direct:
            fresher = await users_pb2_grpc.UsersServiceStub(direct).Refresh(
                users_pb2.RefreshRequest(refresh_token=signed.tokens.refresh_token)
            )
        newer = verifier.read_access(fresher.tokens.access_token)
        assert newer.session_id == identity.session_id
        assert await checker.is_live(newer) is True
    async with grpc.aio.insecure_channel(f"127.0.0.1:{earlier_users}") as direct:
        valid = await users_pb2_grpc.UsersServiceStub(direct).ValidateToken(
            users_pb2.ValidateTokenRequest(), metadata=(bearer(fresher.tokens.access_token),)
        )
        assert valid.valid


async def test_a_token_users_cannot_read_is_not_remembered_as_its_session_s_answer(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    """The answers are remembered by session id. A refusal of one token (signed with a key the
    users service has withdrawn: a terminal replica that still trusts it remembered one) is no
    answer about its session: another token of that session, asked within the memo's time, is
    still live (it was told SESSION_REVOKED, which signs the web client out)."""
    config = make_config("users", USERS_DATABASE_URL=users_database, BCRYPT_COST="4")
    async with (
        running(config, build_users, port=0, grace=0) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        users = users_pb2_grpc.UsersServiceStub(channel)
        signed = await users.Register(
            users_pb2.RegisterRequest(email="bo@example.com", password=PASSWORD)
        )
        current = users_codec().read_access(signed.tokens.access_token)
        withdrawn_key = users_codec(access_ttl=-3600, key=SigningKey.generate())
        token, expires = withdrawn_key.issue_access(
            user_id=current.user_id,
            session_id=current.session_id,
            email=current.email,
            roles=["user"],
        )
        old = dataclasses.replace(current, token=token, expires_at=expires)
        checker = RemoteSessionChecker(channel, ttl=5.0)
        with contextlib.suppress(Unauthenticated):
            assert await checker.is_live(old) is False
        assert await checker.is_live(current) is True
