"""AttachTerminal straight over gRPC, as another service inside the deployment would call it:
an attachment ends when its own session logs out (it kept typing into the shell and reading it,
while every new call with that token was refused), and a frame the rules refuse (a resize out of
range) is answered while the input goes on (it silently ended all input)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine
from stockfolio.terminal.v1 import terminal_pb2, terminal_pb2_grpc
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.auth import bearer
from services.runtime.config import RuntimeConfig
from services.runtime.server import running
from services.terminal.server import build as build_terminal
from services.users.orm import sessions
from services.users.server import build as build_users
from services.workspace.server import build as build_workspace
from tests.conftest import SQLITE_ONLY
from tests.rpc_errors import reason
from tests.waiting import until

pytestmark = SQLITE_ONLY

PASSWORD = "correct-horse-9"
WAIT = 15.0


@pytest.fixture
async def stubs(
    make_config: Callable[..., RuntimeConfig],
    users_service: RuntimeConfig,
    workspace_database: str,
    tmp_path: Path,
) -> AsyncIterator[tuple[users_pb2_grpc.UsersServiceStub, terminal_pb2_grpc.TerminalServiceStub]]:
    users = users_service.addresses["users"][0]
    shared = {"USERS_ADDRS": users, "WORKSPACE_ROOT": str(tmp_path / "workspaces")}
    ws_db = workspace_database
    async with running(
        make_config("workspace", WORKSPACE_DATABASE_URL=ws_db, **shared),
        build_workspace,
        port=0,
        grace=0,
    ) as workspace:
        terminal_config = make_config(
            "terminal",
            WORKSPACE_ADDRS=f"127.0.0.1:{workspace.port}",
            TERMINAL_SHELLS="/bin/bash,/bin/sh",
            TERMINAL_CLOSE_GRACE="0.5",
            # Recheck often and remember session answers briefly: a long wait proves nothing.
            TERMINAL_SESSION_RECHECK="0.2",
            SESSION_CHECK_TTL="0.1",
            **shared,
        )
        async with (
            running(terminal_config, build_terminal, port=0, grace=1) as terminal,
            grpc.aio.insecure_channel(users) as u,
            grpc.aio.insecure_channel(f"127.0.0.1:{terminal.port}") as t,
        ):
            yield users_pb2_grpc.UsersServiceStub(u), terminal_pb2_grpc.TerminalServiceStub(t)


Stubs = tuple[users_pb2_grpc.UsersServiceStub, terminal_pb2_grpc.TerminalServiceStub]
Attachment = Any  # a grpc.aio stream-stream call of AttachTerminal


def join(session_id: str) -> terminal_pb2.AttachTerminalRequest:
    return terminal_pb2.AttachTerminalRequest(join=terminal_pb2.TerminalJoin(session_id=session_id))


async def read_until(call: Attachment, pattern: str, within: float = WAIT) -> str:
    seen = b""
    deadline = time.monotonic() + within
    while not re.search(pattern.encode(), seen):
        reply = await asyncio.wait_for(call.read(), deadline - time.monotonic())
        assert reply is not grpc.aio.EOF, f"stream ended before {pattern!r}: {seen[-300:]!r}"
        kind = reply.WhichOneof("frame")
        if kind == "data":
            seen += reply.data
        elif kind != "joined":
            raise AssertionError(f"{reply} before {pattern!r}")
    return seen.decode(errors="replace")


async def test_a_grpc_attachment_ends_when_its_own_session_logs_out(stubs: Stubs) -> None:
    users, terminals = stubs
    signed = await users.Register(
        users_pb2.RegisterRequest(email="ann@example.com", password=PASSWORD)
    )
    await asyncio.sleep(1.1)  # the second session's token expires a second later
    other = await users.Login(users_pb2.LoginRequest(email="ann@example.com", password=PASSWORD))
    first = (bearer(signed.tokens.access_token),)
    second = (bearer(other.tokens.access_token),)
    created = await terminals.CreateTerminal(terminal_pb2.CreateTerminalRequest(), metadata=first)
    sid = created.terminal.session_id
    # The owner also looks at the shell from their other session (another tab, another device).
    await terminals.GetTerminal(terminal_pb2.GetTerminalRequest(session_id=sid), metadata=second)

    call = terminals.AttachTerminal(metadata=first)
    await call.write(
        terminal_pb2.AttachTerminalRequest(join=terminal_pb2.TerminalJoin(session_id=sid))
    )
    await call.write(terminal_pb2.AttachTerminalRequest(data=b"echo before-$((40+2))\r"))
    await read_until(call, r"before-42")

    await users.Logout(users_pb2.LogoutRequest(), metadata=first)
    # The first session's token is now refused by the terminal service for any new call...
    deadline = time.monotonic() + WAIT
    while True:
        try:
            await terminals.GetTerminal(
                terminal_pb2.GetTerminalRequest(session_id=sid), metadata=first
            )
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    await asyncio.sleep(2.0)  # ten rechecks, twenty session-answer lifetimes

    # ...and the attachment it opened ends, saying why; its input no longer reaches the shell.
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await read_until(call, "never printed")
    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "logged out" in (ended.value.details() or "")


async def test_a_grpc_attachment_ends_when_its_session_reaches_its_own_end(
    stubs: Stubs, users_database: str
) -> None:
    """A session past its own end (REFRESH_TOKEN_TTL from its login) was not ended by anyone:
    its attachment ends with SESSION_EXPIRED ("log in again"), not as a logout. (The owner is
    still logged in elsewhere, so the shell itself goes on.)"""
    users, terminals = stubs
    signed = await users.Register(
        users_pb2.RegisterRequest(email="bo@example.com", password=PASSWORD)
    )
    other = await users.Login(users_pb2.LoginRequest(email="bo@example.com", password=PASSWORD))
    auth = (bearer(signed.tokens.access_token),)
    created = await terminals.CreateTerminal(terminal_pb2.CreateTerminalRequest(), metadata=auth)
    await terminals.GetTerminal(
        terminal_pb2.GetTerminalRequest(session_id=created.terminal.session_id),
        metadata=(bearer(other.tokens.access_token),),
    )
    call = terminals.AttachTerminal(metadata=auth)
    await call.write(join(created.terminal.session_id))
    await call.write(terminal_pb2.AttachTerminalRequest(data=b"echo before-$((40+2))\r"))
    await read_until(call, r"before-42")
    session_id = jwt.decode(signed.tokens.access_token, options={"verify_signature": False})["sid"]
    engine = create_async_engine(users_database)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(sessions)
                .where(sessions.c.id == session_id)
                .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
            )
    finally:
        await engine.dispose()
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await read_until(call, "never printed")
    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason(ended.value) == "SESSION_EXPIRED"


async def test_a_bad_resize_frame_is_refused_and_input_goes_on(stubs: Stubs) -> None:
    users, terminals = stubs
    signed = await users.Register(
        users_pb2.RegisterRequest(email="bob@example.com", password=PASSWORD)
    )
    auth = (bearer(signed.tokens.access_token),)
    sid = (
        await terminals.CreateTerminal(terminal_pb2.CreateTerminalRequest(), metadata=auth)
    ).terminal.session_id
    call = terminals.AttachTerminal(metadata=auth)
    await call.write(
        terminal_pb2.AttachTerminalRequest(join=terminal_pb2.TerminalJoin(session_id=sid))
    )
    await call.write(terminal_pb2.AttachTerminalRequest(data=b"echo one-$((40+2))\r"))
    await read_until(call, r"one-42")
    # Out of range: the README says a refused frame is answered and the attachment goes on.
    await call.write(
        terminal_pb2.AttachTerminalRequest(resize=terminal_pb2.TerminalSize(cols=5000, rows=40))
    )
    await call.write(terminal_pb2.AttachTerminalRequest(data=b"echo two-$((40+2))\r"))
    seen = b""
    refused = False
    deadline = time.monotonic() + 5.0
    while b"two-42" not in seen and time.monotonic() < deadline:
        try:
            reply = await asyncio.wait_for(call.read(), deadline - time.monotonic())
        except TimeoutError:
            break
        if reply is grpc.aio.EOF:
            break
        kind = reply.WhichOneof("frame")
        if kind == "data":
            seen += reply.data
        elif kind == "error":
            refused = True
    call.cancel()
    assert refused, "the bad resize was not answered"
    assert b"two-42" in seen, "input after a bad resize never reached the shell"


@contextlib.asynccontextmanager
async def users_and_terminal(
    make_config: Callable[..., RuntimeConfig],
    users_database: str,
    workspace_url: str,
    tmp_path: Path,
    **environ: str,
) -> AsyncIterator[Stubs]:
    """Users, workspace and terminal servers; `environ` for users and terminal both (Redis,
    token lifetimes, how often the terminal rechecks)."""
    users_config = make_config(
        "users", USERS_DATABASE_URL=users_database, BCRYPT_COST="4", **environ
    )
    async with running(users_config, build_users, port=0, grace=0) as users:
        shared = {
            "USERS_ADDRS": f"127.0.0.1:{users.port}",
            "WORKSPACE_ROOT": str(tmp_path / "workspaces"),
        }
        workspace_config = make_config("workspace", WORKSPACE_DATABASE_URL=workspace_url, **shared)
        async with running(workspace_config, build_workspace, port=0, grace=0) as workspace:
            terminal_config = make_config(
                "terminal",
                WORKSPACE_ADDRS=f"127.0.0.1:{workspace.port}",
                TERMINAL_SHELLS="/bin/bash,/bin/sh",
                TERMINAL_CLOSE_GRACE="0.5",
                **shared,
                **environ,
            )
            async with (
                running(terminal_config, build_terminal, port=0, grace=1) as terminal,
                grpc.aio.insecure_channel(shared["USERS_ADDRS"]) as u,
                grpc.aio.insecure_channel(f"127.0.0.1:{terminal.port}") as t,
            ):
                yield users_pb2_grpc.UsersServiceStub(u), terminal_pb2_grpc.TerminalServiceStub(t)


async def test_logging_out_everywhere_ends_a_shell_whose_token_is_about_to_expire(
    make_config: Callable[..., RuntimeConfig],
    users_database: str,
    workspace_database: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """The terminal service's recheck asks with the token it remembers of the shell's owner,
    and could not once that token was within 30 s of its expiry (with 900 s tokens, a shell
    nobody touched for 14.5 minutes): such a shell outlived its owner's logout everywhere. The
    users service announces it (on Redis), and the shell ends at once."""
    async with users_and_terminal(
        make_config,
        users_database,
        workspace_database,
        tmp_path,
        ACCESS_TOKEN_TTL="35",  # within the 30 s margin after 5 s
        REDIS_URL=redis_url,
    ) as (accounts, terminals):
        signed = await accounts.Register(
            users_pb2.RegisterRequest(email="cy@example.com", password=PASSWORD)
        )
        auth = (bearer(signed.tokens.access_token),)
        created = await terminals.CreateTerminal(
            terminal_pb2.CreateTerminalRequest(), metadata=auth
        )
        pid = created.terminal.pid
        await asyncio.sleep(6)  # the remembered token is within the margin now
        logout = users_pb2.LogoutRequest(all_sessions=True)
        assert (await accounts.Logout(logout, metadata=auth)).revoked_sessions == 1
        await until(lambda: not alive(pid), "the shell to end", within=5.0)


async def test_without_redis_a_logout_everywhere_ends_a_shell_whose_token_has_expired(
    make_config: Callable[..., RuntimeConfig],
    users_database: str,
    workspace_database: str,
    tmp_path: Path,
) -> None:
    """Without Redis nobody announces a logout, and the recheck is all there is: it asked with
    the token it remembered of the owner, and could not once that token expired, so a shell
    nobody had touched for a while outlived the logout for good. It asks with the expired
    token now (CheckSession), through the real servers."""
    async with users_and_terminal(
        make_config,
        users_database,
        workspace_database,
        tmp_path,
        ACCESS_TOKEN_TTL="5",
        TERMINAL_SESSION_RECHECK="0.2",
        SESSION_CHECK_TTL="0.1",
    ) as (accounts, terminals):
        signed = await accounts.Register(
            users_pb2.RegisterRequest(email="dee@example.com", password=PASSWORD)
        )
        created = await terminals.CreateTerminal(
            terminal_pb2.CreateTerminalRequest(),
            metadata=(bearer(signed.tokens.access_token),),
        )
        pid = created.terminal.pid
        await asyncio.sleep(6)  # the only token the terminal saw has expired
        assert alive(pid)  # she is still logged in: the rechecks keep it
        refreshed = await accounts.Refresh(
            users_pb2.RefreshRequest(refresh_token=signed.tokens.refresh_token)
        )
        logout = users_pb2.LogoutRequest(all_sessions=True)
        fresh = (bearer(refreshed.tokens.access_token),)
        assert (await accounts.Logout(logout, metadata=fresh)).revoked_sessions == 1
        await until(lambda: not alive(pid), "the shell to end", within=5.0)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
