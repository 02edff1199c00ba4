"""The terminal's logout recheck with remembered tokens however old, through the real users
service (CheckSession): a logout of one device leaves the shell to a live one; each login past
its own end ends it; users unreachable decides nothing (the logins stay); a token whose key was
withdrawn is over."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import jwt
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.auth import bearer
from services.runtime.config import RuntimeConfig
from services.runtime.context import Identity
from services.runtime.errors import Unavailable
from services.runtime.keys import SigningKey
from services.runtime.sessions import remote_sessions
from services.terminal.logins import Logins
from services.terminal.manager import TerminalManager
from services.terminal.server import owner_still_logged_in
from services.users.orm import sessions as session_rows
from tests.conftest import users_codec

PASSWORD = "correct-horse-9"
DEAD = "127.0.0.1:1"


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
async def users(users_service: RuntimeConfig) -> AsyncIterator[users_pb2_grpc.UsersServiceStub]:
    async with grpc.aio.insecure_channel(users_service.addresses["users"][0]) as channel:
        yield users_pb2_grpc.UsersServiceStub(channel)


def lapsed_identity(access_token: str, *, key: SigningKey | None = None) -> Identity:
    """The identity the terminal remembers of a login, its token expired an hour ago."""
    claims = jwt.decode(access_token, options={"verify_signature": False})
    codec = users_codec(access_ttl=-3600) if key is None else users_codec(access_ttl=-3600, key=key)
    token, expires = codec.issue_access(
        user_id=claims["sub"], session_id=claims["sid"], email=claims["email"], roles=["user"]
    )
    return Identity(
        user_id=claims["sub"],
        session_id=claims["sid"],
        email=claims["email"],
        roles=frozenset({"user"}),
        token=token,
        expires_at=expires,
    )


async def _aged(config: RuntimeConfig) -> None:
    await asyncio.sleep(config.session_check_ttl + 0.1)


async def test_a_logout_of_one_device_leaves_the_shell_to_the_other_then_everywhere_ends_it(
    users: users_pb2_grpc.UsersServiceStub, users_service: RuntimeConfig, tmp_path: Path
) -> None:
    """Both logins' remembered tokens expired an hour ago. Her phone logs out: the laptop's
    login still stands, so the shell stays (and only the phone's login is dropped). The laptop
    logs out too: the shell ends."""
    signed = await users.Register(
        users_pb2.RegisterRequest(email="ann@example.com", password=PASSWORD)
    )
    laptop = await users.Login(users_pb2.LoginRequest(email="ann@example.com", password=PASSWORD))
    phone_seen = lapsed_identity(signed.tokens.access_token)
    laptop_seen = lapsed_identity(laptop.tokens.access_token)
    logins = Logins(lambda owner: True)
    logins.saw(phone_seen)
    logins.saw(laptop_seen)
    async with (
        contextlib.AsyncExitStack() as resources,
        TerminalManager(tmp_path, shells=("/bin/sh",), grace=0.5) as manager,
    ):
        still_allowed = owner_still_logged_in(
            await remote_sessions(users_service, resources), logins
        )
        manager.still_allowed = still_allowed
        shell = await manager.create(phone_seen.user_id, None, 80, 24, "/bin/sh")
        assert await still_allowed(shell) is True
        await users.Logout(
            users_pb2.LogoutRequest(), metadata=(bearer(signed.tokens.access_token),)
        )
        await _aged(users_service)
        assert await still_allowed(shell) is True
        assert await manager.recheck() == []
        assert [login.session_id for login in logins.of(phone_seen.user_id)] == [
            laptop_seen.session_id
        ]
        await users.Logout(
            users_pb2.LogoutRequest(), metadata=(bearer(laptop.tokens.access_token),)
        )
        await _aged(users_service)
        assert await still_allowed(shell) is False
        assert logins.of(phone_seen.user_id) == []


async def test_a_login_past_its_own_end_ends_the_shell(
    users: users_pb2_grpc.UsersServiceStub,
    users_service: RuntimeConfig,
    users_database: str,
    tmp_path: Path,
) -> None:
    signed = await users.Register(
        users_pb2.RegisterRequest(email="bea@example.com", password=PASSWORD)
    )
    seen = lapsed_identity(signed.tokens.access_token)
    logins = Logins(lambda owner: True)
    logins.saw(seen)
    engine = create_async_engine(users_database)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(session_rows)
                .where(session_rows.c.id == seen.session_id)
                .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
            )
    finally:
        await engine.dispose()
    async with (
        contextlib.AsyncExitStack() as resources,
        TerminalManager(tmp_path, shells=("/bin/sh",), grace=0.5) as manager,
    ):
        manager.still_allowed = owner_still_logged_in(
            await remote_sessions(users_service, resources), logins
        )
        shell = await manager.create(seen.user_id, None, 80, 24, "/bin/sh")
        assert await manager.recheck() == [shell.id]
        assert manager.sessions_of(seen.user_id) == []
        assert logins.of(seen.user_id) == []


async def test_users_unreachable_decides_nothing_and_forgets_no_login(
    users: users_pb2_grpc.UsersServiceStub,
    users_service: RuntimeConfig,
    make_config: object,
    tmp_path: Path,
) -> None:
    signed = await users.Register(
        users_pb2.RegisterRequest(email="cid@example.com", password=PASSWORD)
    )
    seen = lapsed_identity(signed.tokens.access_token)
    logins = Logins(lambda owner: True)
    logins.saw(seen)
    unreachable = dataclasses.replace(
        users_service, addresses={**users_service.addresses, "users": (DEAD,)}
    )
    async with (
        contextlib.AsyncExitStack() as resources,
        TerminalManager(tmp_path, shells=("/bin/sh",), grace=0.5) as manager,
    ):
        still_allowed = owner_still_logged_in(await remote_sessions(unreachable, resources), logins)
        manager.still_allowed = still_allowed
        shell = await manager.create(seen.user_id, None, 80, 24, "/bin/sh")
        with pytest.raises(Unavailable):
            await still_allowed(shell)
        assert await manager.recheck() == []
        assert manager.sessions_of(seen.user_id)
        assert logins.of(seen.user_id) == [seen]


async def test_a_remembered_token_whose_key_was_withdrawn_is_over(
    users: users_pb2_grpc.UsersServiceStub, users_service: RuntimeConfig, tmp_path: Path
) -> None:
    """Signed with a key the users service no longer trusts (withdrawn: a compromise, or the
    rotation's last step): CheckSession refuses it TOKEN_INVALID, and the login is over for the
    recheck (nothing it started is trusted any more)."""
    signed = await users.Register(
        users_pb2.RegisterRequest(email="dot@example.com", password=PASSWORD)
    )
    seen = lapsed_identity(signed.tokens.access_token, key=SigningKey.generate())
    logins = Logins(lambda owner: True)
    logins.saw(seen)
    async with (
        contextlib.AsyncExitStack() as resources,
        TerminalManager(tmp_path, shells=("/bin/sh",), grace=0.5) as manager,
    ):
        still_allowed = owner_still_logged_in(
            await remote_sessions(users_service, resources), logins
        )
        shell = await manager.create(seen.user_id, None, 80, 24, "/bin/sh")
        assert await still_allowed(shell) is False
        assert logins.of(seen.user_id) == []
