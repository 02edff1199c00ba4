"""The real users, workspace and terminal services on port 0 behind the real facade, for the
terminal's tests (fixtures: `system`, `start_system`, `workspace_database`; every test sees them:
tests/conftest.py names this module in `pytest_plugins`), and the helpers those tests call: a
shell, its output, a socket joined to it, processes that come and go.

The terminal service keeps no database: its tests run on SQLite alone (`SQLITE_ONLY`), the
engines being the users' and workspace's own tests' concern."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from facade.app import create_app
from facade.config import FacadeConfig, load_facade_config
from services.runtime.config import RuntimeConfig
from services.runtime.server import running
from services.terminal.server import build as build_terminal
from services.workspace.server import build as build_workspace
from tests.conftest import migrated_sqlite
from tests.integration import socket_client
from tests.integration.rest_client import User, call, register
from tests.integration.socket_client import Socket
from tests.processes import host_processes

Client = TestClient[web.Request, web.Application]

DEAD = "127.0.0.1:1"
WAIT = 15.0


@dataclass
class System:
    client: Client
    root: Path
    terminal_port: int


Start = Callable[..., contextlib.AbstractAsyncContextManager[System]]


@pytest.fixture
def workspace_database(tmp_path: Path) -> str:
    return migrated_sqlite("workspace", tmp_path / "workspace.db")


@pytest.fixture
def start_system(
    make_config: Callable[..., RuntimeConfig],
    users_service: RuntimeConfig,
    workspace_database: str,
    tmp_path: Path,
) -> Start:
    """Workspace, terminal and the facade in front of them (users from its fixture); keyword
    arguments are the terminal service's environment."""

    @contextlib.asynccontextmanager
    async def start(**terminal_env: str) -> AsyncIterator[System]:
        users = users_service.addresses["users"][0]
        root = tmp_path / "workspaces"
        shared = {"USERS_ADDRS": users, "WORKSPACE_ROOT": str(root)}
        async with workspace_on(make_config, workspace_database, **shared) as workspace:
            terminal_config = make_config(
                "terminal", **terminal_settings(workspace), **shared, **terminal_env
            )
            async with running(terminal_config, build_terminal, port=0, grace=1) as terminal:
                terminals = [f"127.0.0.1:{terminal.port}"]
                config = facade_config(make_config, users, workspace, terminals)
                async with TestClient(TestServer(create_app(config))) as client:
                    yield System(client, root, terminal.port)

    return start


@contextlib.asynccontextmanager
async def workspace_on(
    make_config: Callable[..., RuntimeConfig], database: str, **shared: str
) -> AsyncIterator[str]:
    """A workspace service on port 0 over `database`, `shared` its environment beside the
    terminal service's (USERS_ADDRS, WORKSPACE_ROOT, ...); yields its address."""
    config = make_config("workspace", WORKSPACE_DATABASE_URL=database, **shared)
    async with running(config, build_workspace, port=0, grace=0) as workspace:
        yield f"127.0.0.1:{workspace.port}"


def terminal_settings(workspace: str) -> dict[str, str]:
    """The terminal service's own environment in these tests: bash or sh, a short close grace,
    the workspace at `workspace`."""
    return {
        "WORKSPACE_ADDRS": workspace,
        "TERMINAL_SHELLS": "/bin/bash,/bin/sh",
        "TERMINAL_CLOSE_GRACE": "0.5",
    }


def facade_config(
    make_config: Callable[..., RuntimeConfig],
    users: str,
    workspace: str,
    terminals: list[str],
    **environment: str,
) -> FacadeConfig:
    """The facade in front of users, workspace and the `terminals` (portfolio and assistant
    unreachable, no rate limits); keyword arguments are more of its environment."""
    env = {
        "USERS_ADDRS": users,
        "PORTFOLIO_ADDRS": DEAD,
        "ASSISTANT_ADDRS": DEAD,
        "TERMINAL_ADDRS": ",".join(terminals),
        "WORKSPACE_ADDRS": workspace,
        "RATE_LIMIT_API": "0",
        "RATE_LIMIT_AUTH": "0",
        **environment,
    }
    return load_facade_config(env, runtime=make_config("facade", **env))


@pytest.fixture
async def system(start_system: Start) -> AsyncIterator[System]:
    async with start_system() as started:
        yield started


async def create(client: Client, user: User, expect: int = 201, **fields: Any) -> Any:
    body = await call(
        client, "POST", "/api/v1/terminal/terminals/create", user, expect, json=fields
    )
    return body["data"] if expect == 201 else body


async def output_until(
    client: Client, user: User, session_id: str, pattern: str, within: float = WAIT
) -> str:
    """The session's recent output (history), once it matches `pattern`."""
    deadline = time.monotonic() + within
    while True:
        body = await call(client, "GET", f"/api/v1/terminal/terminals/{session_id}/history", user)
        output: str = body["data"]["recentOutput"]
        if re.search(pattern, output):
            return output
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} in {output[-400:]!r}")
        await asyncio.sleep(0.05)


async def write(client: Client, user: User, session_id: str, data: str) -> Any:
    return await call(
        client,
        "POST",
        f"/api/v1/terminal/terminals/{session_id}/write",
        user,
        json={"data": data},
    )


async def at_its_prompt(client: Client) -> tuple[User, str]:
    """A new user and a shell of theirs, once it shows its prompt (typed before, input would be
    read by no prompt yet)."""
    user = await register(client)
    sid = (await create(client, user))["sessionId"]
    await output_until(client, user, sid, r"\$ $")
    return user, sid


async def socket(client: Client, user: User, path: str = "/ws/terminal") -> Socket:
    return await socket_client.authenticated(client, path, user.token, WAIT)


async def joined(client: Client) -> tuple[User, str, Socket]:
    """A new user, a shell of theirs, and a socket joined to it."""
    user = await register(client)
    sid = (await create(client, user))["sessionId"]
    ws = await socket(client, user)
    await ws.send_json({"type": "join", "sessionId": sid})
    await receive(ws, "joined")
    return user, sid, ws


async def receive(ws: Socket, kind: str) -> dict[str, Any]:
    """The next message of `kind`, within the terminal's longer wait (shells start slowly)."""
    return await socket_client.receive(ws, kind, WAIT)


async def read_output(ws: Socket, pattern: str, within: float = WAIT) -> str:
    """`data` messages joined, until they match `pattern`."""
    seen = ""
    deadline = time.monotonic() + within
    while not re.search(pattern, seen):
        try:
            message = await ws.receive_json(timeout=deadline - time.monotonic())
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} in {seen[-400:]!r}") from None
        if message["type"] == "data":
            seen += message["data"]
        elif message["type"] in ("exit", "error"):
            raise AssertionError(f"{message} before {pattern!r}; output {seen[-400:]!r}")
    return seen


def gone(pid: int) -> bool:
    """No such process: neither running nor a zombie waiting to be reaped (kill(0) finds
    both)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def until_running(argv: list[str], *, count: int, within: float = WAIT) -> list[int]:
    deadline = time.monotonic() + within
    while len(found := host_processes(argv)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{argv} runs {len(found)} times, not {count}")
        await asyncio.sleep(0.05)
    return found


async def until_gone(pid: int, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not gone(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} is still there")
        await asyncio.sleep(0.05)
