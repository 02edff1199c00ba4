"""Terminals end to end: the real users, workspace and terminal services on port 0 behind the
real facade; REST routes and /ws/terminal with real shells in real pseudo-terminals.

SQLite only: the terminal service keeps no database, and the engines are the users' and
workspace's own tests' concern.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
from typing import Any

import aiohttp

from services.runtime.cgroups import CgroupTree
from tests.conftest import SQLITE_ONLY
from tests.integration.rest_client import PASSWORD, User, call, register
from tests.integration.terminal_harness import (
    WAIT,
    Start,
    System,
    create,
    joined,
    output_until,
    read_output,
    receive,
    socket,
    until_gone,
    until_running,
    write,
)
from tests.processes import host_processes
from tests.waiting import until

SESSION_ID = re.compile(r"^session_\d{13}_[0-9a-f]{12}$")

pytestmark = SQLITE_ONLY


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
