"""Terminals end to end: the real users, workspace and terminal services on port 0 behind the
real facade; REST routes and /ws/terminal with real shells in real pseudo-terminals.

SQLite only: the terminal service keeps no database, and the engines are the users' and
workspace's own tests' concern.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from facade.app import create_app
from facade.config import load_facade_config
from services.runtime.cgroups import CgroupTree
from services.runtime.config import RuntimeConfig
from services.runtime.server import running
from services.terminal.server import build as build_terminal
from services.workspace.server import build as build_workspace
from tests.conftest import migrated_sqlite
from tests.integration import socket_client
from tests.integration.rest_client import PASSWORD, User, call, register
from tests.integration.socket_client import Socket
from tests.processes import host_processes
from tests.waiting import until

Client = TestClient[web.Request, web.Application]

DEAD = "127.0.0.1:1"
WAIT = 15.0
SESSION_ID = re.compile(r"^session_\d{13}_[0-9a-f]{12}$")


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


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
        workspace_config = make_config(
            "workspace", WORKSPACE_DATABASE_URL=workspace_database, **shared
        )
        async with running(workspace_config, build_workspace, port=0, grace=0) as workspace:
            workspace_address = f"127.0.0.1:{workspace.port}"
            terminal_config = make_config(
                "terminal",
                WORKSPACE_ADDRS=workspace_address,
                TERMINAL_SHELLS="/bin/bash,/bin/sh",
                TERMINAL_CLOSE_GRACE="0.5",
                **shared,
                **terminal_env,
            )
            async with running(terminal_config, build_terminal, port=0, grace=1) as terminal:
                env = {
                    "USERS_ADDRS": users,
                    "PORTFOLIO_ADDRS": DEAD,
                    "ASSISTANT_ADDRS": DEAD,
                    "TERMINAL_ADDRS": f"127.0.0.1:{terminal.port}",
                    "WORKSPACE_ADDRS": workspace_address,
                    "RATE_LIMIT_API": "0",
                    "RATE_LIMIT_AUTH": "0",
                }
                config = load_facade_config(env, runtime=make_config("facade", **env))
                async with TestClient(TestServer(create_app(config))) as client:
                    yield System(client, root, terminal.port)

    return start


@pytest.fixture
async def system(start_system: Start) -> AsyncIterator[System]:
    async with start_system() as started:
        yield started


# --- helpers -------------------------------------------------------------------------------


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


# --- REST ----------------------------------------------------------------------------------


async def test_a_terminal_starts_in_the_users_own_root_and_reports_itself(
    system: System,
) -> None:
    client = system.client
    ann = await register(client)
    terminal = await create(client, ann)
    assert SESSION_ID.match(terminal["sessionId"])
    assert terminal["pid"] > 0
    assert (terminal["cols"], terminal["rows"]) == (80, 24)
    assert terminal["state"] == "running"
    assert terminal["userId"] == ann.id
    assert terminal["shell"] == "/bin/bash"
    assert terminal["projectId"] == ""
    await write(client, ann, terminal["sessionId"], "pwd\n")
    # The sandbox shows the user's own folder as /workspace; the host's layout stays unseen.
    output = await output_until(client, ann, terminal["sessionId"], r"/workspace\r\n")
    assert str(system.root.resolve()) not in output
    got = await call(client, "GET", f"/api/v1/terminal/terminals/{terminal['sessionId']}", ann)
    assert got["data"]["pid"] == terminal["pid"]
    assert got["data"]["lastActivity"] >= terminal["createdAt"]


async def test_a_terminal_in_a_project_starts_in_its_directory(system: System) -> None:
    client = system.client
    ann = await register(client)
    body = await call(
        client,
        "POST",
        "/api/v1/workspace/projects",
        ann,
        201,
        json={"name": "research", "template": "notes"},
    )
    project = body["data"]
    terminal = await create(  # noqa: S604 - a request field, not a subprocess flag
        client, ann, projectId=project["id"], cols=100, rows=30, shell="/bin/sh"
    )
    assert terminal["projectId"] == project["id"]
    assert (terminal["cols"], terminal["rows"], terminal["shell"]) == (100, 30, "/bin/sh")
    await write(client, ann, terminal["sessionId"], "pwd; ls\n")
    output = await output_until(client, ann, terminal["sessionId"], r"README\.md")
    assert re.search(r"/workspace/\S*research\r\n", output), repr(output)


async def test_bad_requests_get_clear_4xx(system: System) -> None:
    client = system.client
    ann = await register(client)
    bob = await register(client)
    unknown = await create(client, ann, 404, projectId="no-such-project")
    assert unknown["error"] in ("NOT_FOUND", "PROJECT_NOT_FOUND")
    dims = await create(client, ann, 422, cols=-1, rows=9000)
    assert {f["field"] for f in dims["details"]["fields"]} == {"cols", "rows"}
    shell = await create(client, ann, 422, shell="/usr/bin/python3")  # noqa: S604
    assert shell["details"]["fields"][0]["field"] == "shell"
    terminal = await create(client, ann)
    sid = terminal["sessionId"]
    # Another user's session is exactly as unknown as a missing one.
    for path in (f"/api/v1/terminal/terminals/{sid}", "/api/v1/terminal/terminals/session_1_x"):
        body = await call(client, "GET", path, bob, 404)
        assert body["success"] is False and body["error"] == "NOT_FOUND"
    await call(client, "DELETE", f"/api/v1/terminal/terminals/{sid}", bob, 404)
    await call(
        client, "POST", f"/api/v1/terminal/terminals/{sid}/write", bob, 404, json={"data": "x"}
    )
    huge = await call(
        client,
        "POST",
        f"/api/v1/terminal/terminals/{sid}/write",
        ann,
        413,
        json={"data": "x" * (64 * 1024 + 1)},
    )
    assert huge["error"] == "PAYLOAD_TOO_LARGE"
    resize = await call(
        client,
        "POST",
        f"/api/v1/terminal/terminals/{sid}/resize",
        ann,
        422,
        json={"cols": 5000, "rows": 10},
    )
    assert resize["details"]["fields"] == [
        {"field": "cols", "description": "must be between 1 and 1000"}
    ]
    # Without a size (or half of one), the rule across cols, rows and dimensions says what.
    for body in ({}, {"cols": 100}, {"cols": 100, "dimensions": {"cols": 90}}):
        unsized = await call(
            client, "POST", f"/api/v1/terminal/terminals/{sid}/resize", ann, 422, json=body
        )
        assert unsized["error"] == "VALIDATION_ERROR"
        said = {f["description"] for f in unsized["details"]["fields"]}
        assert "needs rows (1 to 500), at the top or in dimensions" in said, body
        assert ("needs cols (1 to 1000), at the top or in dimensions" in said) is (not body)
        assert "rows (1 to 500)" in unsized["message"]
    # Nothing of that reached the session.
    assert (await call(client, "GET", f"/api/v1/terminal/terminals/{sid}", ann))["data"][
        "cols"
    ] == 80


async def test_write_resize_history_and_close(system: System) -> None:
    client = system.client
    ann = await register(client)
    terminal = await create(client, ann)
    sid, pid = terminal["sessionId"], terminal["pid"]
    written = await write(client, ann, sid, "echo one-$((40+2))\n")
    assert written["data"]["bytesWritten"] == len("echo one-$((40+2))\n")
    await output_until(client, ann, sid, r"one-42")
    resized = await call(
        client,
        "POST",
        f"/api/v1/terminal/terminals/{sid}/resize",
        ann,
        json={"cols": 132, "rows": 40},
    )
    assert (resized["data"]["cols"], resized["data"]["rows"]) == (132, 40)
    await write(client, ann, sid, "stty size\n")
    await output_until(client, ann, sid, r"40 132")
    history = await call(client, "GET", f"/api/v1/terminal/terminals/{sid}/history", ann)
    assert history["data"]["commands"] == ["echo one-$((40+2))", "stty size"]
    tail = await call(client, "GET", f"/api/v1/terminal/terminals/{sid}/history?outputBytes=8", ann)
    assert len(tail["data"]["recentOutput"].encode()) <= 8
    await call(client, "DELETE", f"/api/v1/terminal/terminals/{sid}", ann)
    await call(client, "GET", f"/api/v1/terminal/terminals/{sid}", ann, 404)
    await until_gone(pid)


async def test_a_user_keeps_only_as_many_ended_shells_as_running_ones_may_be(
    start_system: Start,
) -> None:
    """Each ended shell holds its scrollback for its owner to read; a loop of shells that print
    and exit held every one until the idle cull (a memory a single user could grow for good)."""
    async with start_system(TERMINAL_MAX_SESSIONS_PER_USER="2") as system:
        client = system.client
        ann = await register(client)
        made = []
        for n in range(5):
            sid = (await create(client, ann))["sessionId"]
            made.append(sid)
            await write(client, ann, sid, f"head -c 50000 /dev/zero | tr '\\0' {n}; exit\n")
            deadline = time.monotonic() + WAIT
            while (await call(client, "GET", f"/api/v1/terminal/terminals/{sid}", ann))["data"][
                "state"
            ] == "running":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        # The two newest are kept, ended, with their output; the older ones are gone (the
        # oldest is let go just after the newest has ended: its end is seen first).
        deadline = time.monotonic() + WAIT
        while (
            len((listed := await call(client, "GET", "/api/v1/terminal/terminals", ann))["data"])
            > 2
        ):
            assert time.monotonic() < deadline, listed
            await asyncio.sleep(0.05)
        assert sorted(t["sessionId"] for t in listed["data"]) == sorted(made[-2:])
        assert {t["state"] for t in listed["data"]} == {"exited"}
        newest = await call(client, "GET", f"/api/v1/terminal/terminals/{made[-1]}/history", ann)
        assert newest["data"]["recentOutput"].count("4") >= 50000
        await call(client, "GET", f"/api/v1/terminal/terminals/{made[0]}", ann, 404)


async def test_lists_are_per_user_admins_see_all_and_caps_answer_429(
    start_system: Start,
) -> None:
    async with start_system(TERMINAL_MAX_SESSIONS_PER_USER="2") as system:
        client = system.client
        admin = await register(client)  # the first user registered is the first admin
        ann = await register(client)
        first = await create(client, ann)
        second = await create(client, ann)
        capped = await create(client, ann, 429)
        assert capped["error"] == "TERMINAL_LIMIT"
        assert capped["details"]["retryAfter"] >= 1
        mine = await create(client, admin)
        listed = await call(client, "GET", "/api/v1/terminal/terminals?limit=1", ann)
        assert [t["sessionId"] for t in listed["data"]] == [first["sessionId"]]
        assert listed["pagination"] == {"page": 1, "limit": 1, "total": 2, "totalPages": 2}
        forbidden = await call(client, "GET", "/api/v1/terminal/terminals?allUsers=true", ann, 403)
        assert forbidden["success"] is False
        everyone = await call(client, "GET", "/api/v1/terminal/terminals?allUsers=true", admin)
        assert {t["sessionId"] for t in everyone["data"]} == {
            first["sessionId"],
            second["sessionId"],
            mine["sessionId"],
        }
        overview = "/api/v1/terminal/terminals/stats/overview"
        stats = (await call(client, "GET", overview, ann))["data"]
        # A shell starts in its sandbox a moment after its create is answered: until it has,
        # its sandbox holds nothing to measure.
        deadline = time.monotonic() + WAIT
        while int(stats["shellMemoryBytes"]) == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            stats = (await call(client, "GET", overview, ann))["data"]
        assert stats["activeSessions"] == 2 and stats["mySessions"] == 2
        assert stats["allUsers"] is False and stats["users"] == 1
        # Another user's session (the admin's) is not counted for ann, anywhere.
        assert stats["totalSessions"] == 2
        assert stats["maxSessionsPerUser"] == 2 and stats["maxSessions"] == 1000
        assert int(stats["memoryBytes"]) > 10 * 1024 * 1024
        assert int(stats["shellMemoryBytes"]) > 0
        # Which sandbox and limits apply (cgroups where this process may make them).
        cgroups = CgroupTree.discover()
        assert stats["sandbox"] == "bwrap"
        assert stats["sandboxLimits"] == (
            f"{cgroups.kind}+rlimits" if cgroups.available else "rlimits"
        )
        assert (stats["sandboxMaxProcesses"], stats["sandboxOpenFiles"]) == (256, 1024)
        assert stats["sandboxMemoryBytes"] == str(1 << 30)
        overall = (await call(client, "GET", "/api/v1/terminal/terminals/stats/overview", admin))[
            "data"
        ]
        assert overall["activeSessions"] == 3 and overall["users"] == 2
        assert overall["totalSessions"] == 3
        assert overall["allUsers"] is True and overall["mySessions"] == 1
        # A closed session frees its place under the cap.
        await call(client, "DELETE", f"/api/v1/terminal/terminals/{first['sessionId']}", ann)
        await create(client, ann)


async def test_the_shell_gets_no_secret_from_the_service_environment(system: System) -> None:
    client = system.client
    ann = await register(client)
    sid = (await create(client, ann))["sessionId"]
    await write(client, ann, sid, "env; echo end-$((40+2))\n")
    output = await output_until(client, ann, sid, r"end-42")
    names = {line.split("=", 1)[0] for line in output.splitlines() if "=" in line}
    assert {"TERM", "HOME", "PATH"} <= names
    assert not names & {"JWT_SECRET", "DATABASE_URL", "REDIS_URL", "CLAUDE_API_KEY"}
    assert "test-secret" not in output.lower()


# --- /ws/terminal --------------------------------------------------------------------------


async def test_join_echo_resize_and_ping_over_the_socket(system: System) -> None:
    client = system.client
    ann = await register(client)
    sid = (await create(client, ann))["sessionId"]
    ws = await socket(client, ann)
    await ws.send_json({"type": "join", "sessionId": sid})
    joined = await receive(ws, "joined")
    assert joined["sessionId"] == sid and joined["terminal"]["state"] == "running"
    await ws.send_json({"type": "data", "data": "echo ws-$((40+2)) é\r"})
    assert "ws-42 é" in await read_output(ws, r"ws-42 é")
    await ws.send_json({"type": "resize", "cols": 90, "rows": 33})
    await ws.send_json({"type": "data", "data": "stty size\r"})
    await read_output(ws, r"33 90")
    await ws.send_json({"type": "ping"})
    await receive(ws, "pong")
    await ws.send_json({"type": "resize", "cols": -1, "rows": 10})
    error = await receive(ws, "error")
    assert error["code"] == "VALIDATION_ERROR" and "cols" in error["message"]
    await ws.close()


async def test_two_tabs_watch_one_session_and_a_reconnect_replays_recent_output(
    system: System,
) -> None:
    client = system.client
    ann = await register(client)
    sid = (await create(client, ann))["sessionId"]
    first = await socket(client, ann)
    second = await socket(client, ann, "/ws/terminal-v2")  # the seed's path
    for ws in (first, second):
        await ws.send_json({"type": "join", "sessionId": sid})
        await receive(ws, "joined")
    await first.send_json({"type": "data", "data": "echo shared-$((40+2))\r"})
    for ws in (first, second):
        await read_output(ws, r"shared-42")
    await first.close()
    await second.close()
    again = await socket(client, ann)
    await again.send_json({"type": "join", "sessionId": sid})
    await receive(again, "joined")
    replay = await read_output(again, r"shared-42")
    assert "echo shared-$((40+2))" in replay
    await again.send_json({"type": "data", "data": "echo after-$((40+2))\r"})
    await read_output(again, r"after-42")
    await again.close()


async def test_socket_refusals_and_exit(system: System) -> None:
    client = system.client
    ann = await register(client)
    bob = await register(client)
    sid = (await create(client, ann))["sessionId"]
    ws = await socket(client, bob)
    await ws.send_json({"type": "data", "data": "ls\r"})
    assert (await receive(ws, "error"))["code"] == "NOT_JOINED"
    await ws.send_json({"type": "join", "sessionId": sid})  # ann's: as unknown as none
    assert (await receive(ws, "error"))["code"] == "NOT_FOUND"
    await ws.send_json({"type": "join", "sessionId": "session_1_nothing"})
    assert (await receive(ws, "error"))["code"] == "NOT_FOUND"
    await ws.send_json({"type": "launch"})
    assert (await receive(ws, "error"))["code"] == "UNKNOWN_TYPE"
    await ws.close()
    # The owner's shell exits: the socket hears the exit code.
    own = await socket(client, ann)
    await own.send_json({"type": "join", "sessionId": sid})
    await receive(own, "joined")
    await own.send_json({"type": "data", "data": "exit 3\r"})
    assert await receive(own, "exit") == {"type": "exit", "code": 3, "reason": "exited"}
    await own.send_json({"type": "data", "data": "ls\r"})
    assert (await receive(own, "error"))["code"] == "NOT_JOINED"
    state = await call(client, "GET", f"/api/v1/terminal/terminals/{sid}", ann)
    assert state["data"]["state"] == "exited" and state["data"]["exitCode"] == 3
    await own.close()


async def test_deleting_a_session_ends_its_sockets_attachment(system: System) -> None:
    client = system.client
    ann = await register(client)
    terminal = await create(client, ann)
    ws = await socket(client, ann)
    await ws.send_json({"type": "join", "sessionId": terminal["sessionId"]})
    await receive(ws, "joined")
    # Background jobs, one in a session of its own, must end with the session too. Their ids
    # inside the sandbox mean nothing on the host: they are found by a unique argument.
    marker = f"300.{secrets.randbelow(10**6):06d}"
    started = f"sleep {marker} & setsid nohup sleep {marker} >/dev/null 2>&1 & echo bg-ok\r"
    await ws.send_json({"type": "data", "data": started})
    await read_output(ws, r"bg-ok\r\n")
    assert len(await until_running(["sleep", marker], count=2)) == 2
    await call(client, "DELETE", f"/api/v1/terminal/terminals/{terminal['sessionId']}", ann)
    assert await receive(ws, "exit") == {"type": "exit", "code": 0, "reason": "closed"}
    await until_gone(terminal["pid"])
    assert host_processes(["sleep", marker]) == []
    await ws.close()


async def test_a_yes_flood_does_not_starve_another_session(start_system: Start) -> None:
    async with start_system(TERMINAL_OUTPUT_RATE="262144") as system:
        client = system.client
        ann = await register(client)
        flood = (await create(client, ann))["sessionId"]
        quiet = (await create(client, ann))["sessionId"]
        flooding = await socket(client, ann)
        await flooding.send_json({"type": "join", "sessionId": flood})
        await receive(flooding, "joined")
        await flooding.send_json({"type": "data", "data": "yes\r"})
        await read_output(flooding, r"(y\r\n){100}")
        talker = await socket(client, ann)
        await talker.send_json({"type": "join", "sessionId": quiet})
        await receive(talker, "joined")
        for n in range(3):
            await talker.send_json({"type": "data", "data": f"echo quiet{n}-$((40+2))\r"})
            await read_output(talker, rf"quiet{n}-42")
        await flooding.send_json({"type": "data", "data": "\x03"})
        await flooding.close()
        await talker.close()


async def test_stopping_the_service_ends_every_shell(start_system: Start) -> None:
    async with start_system() as system:
        client = system.client
        ann = await register(client)
        pids = [(await create(client, ann))["pid"] for _ in range(3)]
    for pid in pids:
        await until_gone(pid)


async def test_a_client_that_stops_reading_is_let_go_by_the_service_with_a_note(
    system: System,
) -> None:
    """Back-pressure, end to end: the facade stops relaying while the socket is congested,
    the service's bound for the attachment fills, and the attachment ends with a note; the
    socket itself is not dropped, and reads the note and the exit once it reads again."""
    client = system.client
    ann, sid, ws = await joined(client)
    await ws.send_json({"type": "data", "data": "head -c 20000000 /dev/zero | tr '\\0' x\r"})
    # Not reading: wait until the service has let this attachment go.
    deadline = time.monotonic() + WAIT
    while True:
        body = await call(client, "GET", f"/api/v1/terminal/terminals/{sid}", ann)
        if body["data"]["watchers"] == 0:
            break
        assert time.monotonic() < deadline, "the attachment was never let go"
        await asyncio.sleep(0.1)
    output = ""
    while True:
        message = await ws.receive_json(timeout=WAIT)
        if message["type"] == "exit":
            break
        output += message.get("data", "")
    assert message == {"type": "exit", "code": 0, "reason": "dropped"}
    assert output.endswith("this view fell behind and was dropped; reconnect to resume]\r\n")
    assert 0 < output.count("x") < 20_000_000
    # The session runs on; joining again resumes.
    await ws.send_json({"type": "join", "sessionId": sid, "noReplay": True})
    await receive(ws, "joined")
    await ws.close()


async def test_a_renewed_token_is_the_one_later_joins_carry(system: System) -> None:
    """A socket renewed with a second session's token goes on working after the first session
    logs out: the join is made with the new token, not the one the socket opened with."""
    client = system.client
    email = f"u{os.urandom(5).hex()}@example.com"
    registered = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "Ann"}
    )
    first = User(**_user_of((await registered.json())["data"]))
    login = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    second = User(**_user_of((await login.json())["data"]))
    sid = (await create(client, second))["sessionId"]
    ws = await socket(client, first)
    await ws.send_json({"type": "auth", "token": second.token})
    await receive(ws, "auth_ok")
    await call(client, "POST", "/api/v1/auth/logout", first, json={})
    # Until the services no longer take the first token (they remember a valid session 2 s).
    deadline = time.monotonic() + WAIT
    while (
        await client.get(f"/api/v1/terminal/terminals/{sid}", headers=first.headers)
    ).status != 401:
        assert time.monotonic() < deadline, "the first session's token was never refused"
        await asyncio.sleep(0.1)
    await ws.send_json({"type": "join", "sessionId": sid})
    joined = await receive(ws, "joined")
    assert joined["sessionId"] == sid
    await ws.close()


def _user_of(data: dict[str, Any]) -> dict[str, str]:
    return {"token": data["tokens"]["accessToken"], "id": data["user"]["id"]}


async def test_logging_out_everywhere_ends_every_shell_of_the_owner(start_system: Start) -> None:
    async with start_system(TERMINAL_SESSION_RECHECK="0.2", SESSION_CHECK_TTL="0.1") as system:
        client = system.client
        ann = await register(client)
        bob = await register(client)
        marker = f"500.{secrets.randbelow(10**6):06d}"
        mine = [await create(client, ann) for _ in range(2)]
        theirs = await create(client, bob)
        for terminal in mine:
            await write(client, ann, terminal["sessionId"], f"setsid sleep {marker} &\n")
        await until_running(["sleep", marker], count=2)
        logout = await client.post(
            "/api/v1/auth/logout", json={"allSessions": True}, headers=ann.headers
        )
        assert logout.status == 200, await logout.text()
        for terminal in mine:
            await until_gone(terminal["pid"])
        # Outer bubblewrap gone, its namespace's init still ends every process in it first:
        # read at once, a `setsid sleep` could still be dying (CI: `assert [2502] == []`).
        await until(lambda: host_processes(["sleep", marker]) == [], "the owner's sleeps to end")
        # Another user's shell is untouched.
        still = await call(client, "GET", f"/api/v1/terminal/terminals/{theirs['sessionId']}", bob)
        assert still["data"]["state"] == "running"


async def test_the_seeds_disconnect_detaches_the_socket_and_the_shell_keeps_running(
    system: System,
) -> None:
    client = system.client
    ann = await register(client)
    terminal = await create(client, ann)
    sid = terminal["sessionId"]
    ws = await socket(client, ann, "/ws/terminal-v2/")  # the seed's path, trailing slash
    await ws.send_json({"type": "join", "sessionId": sid})
    await receive(ws, "joined")
    await ws.send_json({"type": "data", "data": "export KEPT=still-$((6*7))\r"})
    await ws.send_json({"type": "disconnect"})
    # Output relayed before the disconnect was read (the prompt) may come first; then the close.
    closing = await ws.receive(timeout=WAIT)
    while closing.type == aiohttp.WSMsgType.TEXT:
        assert json.loads(closing.data)["type"] == "data", closing.data
        closing = await ws.receive(timeout=WAIT)
    assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1000
    await ws.close()
    state = await call(client, "GET", f"/api/v1/terminal/terminals/{sid}", ann)
    assert state["data"]["state"] == "running"
    again = await socket(client, ann, "/ws/terminal-v2/")
    await again.send_json({"type": "join", "sessionId": sid, "noReplay": True})
    await receive(again, "joined")
    await again.send_json({"type": "data", "data": "echo $KEPT\r"})
    assert "still-42" in await read_output(again, r"still-42\r\n")
    await again.close()


async def test_a_session_speaks_the_seeds_terminal_session_names(system: System) -> None:
    client = system.client
    ann = await register(client)
    terminal = await create(client, ann, dimensions={"cols": 100, "rows": 30})
    sid = terminal["sessionId"]
    assert terminal["id"] == sid and terminal["userId"] == ann.id
    assert terminal["dimensions"] == {"cols": 100, "rows": 30}
    assert (terminal["cols"], terminal["rows"]) == (100, 30)
    assert {"projectId", "createdAt", "lastActivity"} <= terminal.keys()
    resized = await call(
        client,
        "POST",
        f"/api/v1/terminal/terminals/{sid}/resize",
        ann,
        json={"dimensions": {"cols": 90, "rows": 20}},
    )
    assert resized["data"]["dimensions"] == {"cols": 90, "rows": 20}
    await write(client, ann, sid, "stty size\n")
    assert "20 90" in await output_until(client, ann, sid, r"20 90\r\n")
