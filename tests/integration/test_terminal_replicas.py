"""Terminals at two replicas (issue 15, part 3): two real terminal services on port 0 sharing a
Redis, the real users and workspace services, and the real facade in front with both replicas
in TERMINAL_ADDRS. Each session is owned by the replica round robin sent its create to; REST
calls and socket joins naming it reach that replica; when it stops, its sessions are reported
exited with reason `replica_lost` and the other replica's keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from facade.app import create_app
from services.runtime.config import RuntimeConfig
from services.runtime.ownership import Owners
from services.runtime.redis_cache import RedisCache
from services.runtime.server import running
from services.terminal.server import build as build_terminal
from tests.integration import socket_client
from tests.integration.rest_client import User, call, register
from tests.integration.terminal_harness import (
    WAIT,
    Client,
    facade_config,
    output_until,
    read_output,
    terminal_settings,
    workspace_on,
)

# A Redis database of these tests' own (others flush theirs while running).
REDIS_URL = os.environ.get("STOCKFOLIO_TEST_REDIS_REPLICAS", "redis://127.0.0.1:6379/12")
TERMINALS = "/api/v1/terminal/terminals"
CAP = 4  # sessions per user, on all replicas together


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def shared_redis() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as error:
        pytest.skip(f"Redis does not answer at {REDIS_URL}: {error}")
    try:
        yield REDIS_URL
    finally:
        client.flushdb()
        client.close()


@dataclass
class Replicas:
    client: Client
    addresses: list[str]
    owners: Owners
    stop: Callable[[int], Awaitable[None]]


@pytest.fixture
async def replicas(
    make_config: Callable[..., RuntimeConfig],
    users_service: RuntimeConfig,
    workspace_database: str,
    shared_redis: str,
    tmp_path: Path,
) -> AsyncIterator[Replicas]:
    users = users_service.addresses["users"][0]
    root = tmp_path / "workspaces"
    shared = {"USERS_ADDRS": users, "WORKSPACE_ROOT": str(root), "REDIS_URL": shared_redis}
    async with contextlib.AsyncExitStack() as stack:
        workspace = await stack.enter_async_context(
            workspace_on(make_config, workspace_database, **shared)
        )
        terminal_config = make_config(
            "terminal",
            **terminal_settings(workspace),
            # Both replicas run in this one process, where the sandbox's cgroup scope is the
            # process's: a replica stopping would end the other's sandboxes too. Separate
            # processes (tests/faults/test_terminal_replica_kill.py) run them sandboxed.
            TERMINAL_SANDBOX="off",
            TERMINAL_MAX_SESSIONS_PER_USER=str(CAP),
            **shared,
        )
        stacks = [contextlib.AsyncExitStack() for _ in range(2)]
        addresses = []
        for own in stacks:
            stack.push_async_exit(own)
            terminal = await own.enter_async_context(
                running(terminal_config, build_terminal, port=0, grace=1)
            )
            addresses.append(f"127.0.0.1:{terminal.port}")
        config = facade_config(make_config, users, workspace, addresses, REDIS_URL=shared_redis)
        cache = RedisCache(shared_redis, prefix="sf:")
        stack.push_async_callback(cache.close)
        client = await stack.enter_async_context(TestClient(TestServer(create_app(config))))

        async def stop(index: int) -> None:
            await stacks[index].aclose()

        yield Replicas(client, addresses, Owners(cache, "terminal"), stop)


async def sessions_on_both(replicas: Replicas, user: User, count: int = 4) -> dict[str, list[str]]:
    """`count` sessions of `user`, by the replica that owns each (round robin spreads them)."""
    by_replica: dict[str, list[str]] = {a: [] for a in replicas.addresses}
    for _ in range(count):
        body = await call(replicas.client, "POST", f"{TERMINALS}/create", user, 201, json={})
        sid = body["data"]["sessionId"]
        owned = await replicas.owners.find(sid)
        assert owned is not None and owned.user == user.id
        by_replica[owned.replica].append(sid)
    assert all(by_replica.values()), f"round robin left a replica without sessions: {by_replica}"
    return by_replica


async def works_over_rest(client: Client, user: User, sid: str, word: str) -> None:
    line = f"echo {word}-$((40+2))\n"
    written = await call(client, "POST", f"{TERMINALS}/{sid}/write", user, json={"data": line})
    assert written["data"]["bytesWritten"] == len(line)
    await output_until(client, user, sid, rf"{word}-42")
    got = (await call(client, "GET", f"{TERMINALS}/{sid}", user))["data"]
    assert (got["sessionId"], got["state"], got.get("exitReason", "")) == (sid, "running", "")
    resized = await call(
        client, "POST", f"{TERMINALS}/{sid}/resize", user, json={"cols": 100, "rows": 30}
    )
    assert (resized["data"]["cols"], resized["data"]["rows"]) == (100, 30)


async def works_over_socket(client: Client, user: User, sid: str, word: str) -> None:
    ws = await socket_client.authenticated(client, "/ws/terminal", user.token, WAIT)
    try:
        await ws.send_json({"type": "join", "sessionId": sid})
        joined = await socket_client.receive(ws, "joined", WAIT)
        assert joined["sessionId"] == sid
        await ws.send_json({"type": "data", "data": f"echo {word}-$((6*7))\n"})
        await read_output(ws, rf"{word}-42")
    finally:
        await ws.close()


async def test_every_session_is_reached_on_the_replica_that_owns_it(replicas: Replicas) -> None:
    client = replicas.client
    ann = await register(client)
    by_replica = await sessions_on_both(replicas, ann)
    every = [sid for sids in by_replica.values() for sid in sids]
    for n, sid in enumerate(every):
        await works_over_rest(client, ann, sid, f"rest{n}")
        await works_over_socket(client, ann, sid, f"sock{n}")
    # Lists hold both replicas' sessions, whichever replica answers (round robin: ask twice).
    for _ in range(2):
        listed = await call(client, "GET", f"{TERMINALS}?limit=100", ann)
        assert sorted(t["sessionId"] for t in listed["data"]) == sorted(every)
        assert listed["pagination"]["total"] == len(every)
        assert {t["state"] for t in listed["data"]} == {"running"}
    # Another user sees none of them, on either replica.
    bob = await register(client)
    for sid in every:
        await call(client, "GET", f"{TERMINALS}/{sid}", bob, 404)
    for _ in range(2):
        assert (await call(client, "GET", TERMINALS, bob))["data"] == []
    # A closed session is gone from both replicas' answers.
    closed = every[0]
    await call(client, "DELETE", f"{TERMINALS}/{closed}", ann)
    assert await replicas.owners.find(closed) is None
    for _ in range(2):
        await call(client, "GET", f"{TERMINALS}/{closed}", ann, 404)
        listed = await call(client, "GET", f"{TERMINALS}?limit=100", ann)
        assert closed not in {t["sessionId"] for t in listed["data"]}


async def test_a_stopped_replicas_sessions_are_reported_lost_and_the_others_keep_working(
    replicas: Replicas,
) -> None:
    client = replicas.client
    ann = await register(client)
    by_replica = await sessions_on_both(replicas, ann)
    gone, kept = replicas.addresses
    lost, alive = by_replica[gone], by_replica[kept]
    # A socket attached to a session of the replica about to stop.
    watching = await socket_client.authenticated(client, "/ws/terminal", ann.token, WAIT)
    await watching.send_json({"type": "join", "sessionId": lost[0]})
    await socket_client.receive(watching, "joined", WAIT)
    await replicas.stop(0)

    # The attachment ends with an exit that says why; the socket stays open for another join.
    ended = await socket_client.receive(watching, "exit", WAIT)
    assert ended["reason"] in ("replica_lost", "closed"), ended
    await watching.close()

    for sid in lost:
        got = (await call(client, "GET", f"{TERMINALS}/{sid}", ann))["data"]
        assert (got["sessionId"], got["state"], got["exitReason"]) == (
            sid,
            "exited",
            "replica_lost",
        )
        refused = await call(
            client, "POST", f"{TERMINALS}/{sid}/write", ann, 422, json={"data": "ls\n"}
        )
        assert refused["error"] == "REPLICA_LOST"
        ws = await socket_client.authenticated(client, "/ws/terminal", ann.token, WAIT)
        await ws.send_json({"type": "join", "sessionId": sid})
        joined = await socket_client.receive(ws, "joined", WAIT)
        assert joined["sessionId"] == sid and joined["terminal"]["exitReason"] == "replica_lost"
        exit_message = await socket_client.receive(ws, "exit", WAIT)
        assert exit_message["reason"] == "replica_lost"
        await ws.close()
    listed = await call(client, "GET", f"{TERMINALS}?limit=100", ann)
    states = {t["sessionId"]: (t["state"], t.get("exitReason", "")) for t in listed["data"]}
    assert states == {
        **dict.fromkeys(lost, ("exited", "replica_lost")),
        **dict.fromkeys(alive, ("running", "")),
    }
    for n, sid in enumerate(alive):
        await works_over_rest(client, ann, sid, f"after{n}")
        await works_over_socket(client, ann, sid, f"after{n}")
    # New sessions start on the replica that is left; a lost one is forgotten once closed.
    body = await call(client, "POST", f"{TERMINALS}/create", ann, 201, json={})
    owned = await replicas.owners.find(body["data"]["sessionId"])
    assert owned is not None and owned.replica == kept
    await call(client, "DELETE", f"{TERMINALS}/{lost[0]}", ann)
    await call(client, "GET", f"{TERMINALS}/{lost[0]}", ann, 404)


async def test_a_shell_that_ends_is_listed_as_ended_by_either_replica(replicas: Replicas) -> None:
    client = replicas.client
    ann = await register(client)
    by_replica = await sessions_on_both(replicas, ann, count=2)
    ending = by_replica[replicas.addresses[0]][0]
    await call(client, "POST", f"{TERMINALS}/{ending}/write", ann, json={"data": "exit 3\n"})
    deadline = time.monotonic() + WAIT
    while True:
        # Both replicas answer in turn: the owner from the session, the other from its record.
        views = []
        for _ in range(2):
            listed = await call(client, "GET", f"{TERMINALS}?limit=100", ann)
            views.append({t["sessionId"]: t for t in listed["data"]}[ending])
        if all(v["state"] == "exited" for v in views):
            break
        assert time.monotonic() < deadline, views
        await asyncio.sleep(0.1)
    assert [(v["exitReason"], v["exitCode"]) for v in views] == [("exited", 3)] * 2


async def test_creates_at_once_on_both_replicas_never_pass_the_users_limit(
    replicas: Replicas,
) -> None:
    client = replicas.client
    ann = await register(client)

    async def create() -> int:
        response = await client.post(f"{TERMINALS}/create", json={}, headers=ann.headers)
        return response.status

    # Twice the limit at once: round robin sends half to each replica.
    statuses = await asyncio.gather(*(create() for _ in range(2 * CAP)))
    assert sorted(statuses) == [201] * CAP + [429] * CAP
    stats = (await call(client, "GET", f"{TERMINALS}/stats/overview", ann))["data"]
    assert stats["mySessions"] == CAP
    assert len(await replicas.owners.held(ann.id)) == CAP


async def test_a_users_limit_and_counts_hold_across_replicas(replicas: Replicas) -> None:
    client = replicas.client
    ann = await register(client)
    by_replica = await sessions_on_both(replicas, ann, count=CAP)
    # Either replica refuses one more: it counts the other's sessions too.
    for _ in range(2):
        capped = await call(client, "POST", f"{TERMINALS}/create", ann, 429, json={})
        assert capped["error"] == "TERMINAL_LIMIT"
    for _ in range(2):
        stats = (await call(client, "GET", f"{TERMINALS}/stats/overview", ann))["data"]
        assert (stats["activeSessions"], stats["mySessions"], stats["users"]) == (CAP, CAP, 1)
        # What runs on the replica that answered.
        assert stats["totalSessions"] in {len(sids) for sids in by_replica.values()}


async def test_one_idempotency_key_opens_one_shell_whichever_replica_each_repeat_reaches(
    replicas: Replicas,
) -> None:
    """A double click's two creates are spread over both replicas by round robin: the key's
    lock and its kept answer are in the shared Redis, so both get the one shell."""
    client = replicas.client
    ann = await register(client)
    headers = {**ann.headers, "Idempotency-Key": f"new-terminal-{os.urandom(4).hex()}"}

    async def create() -> str:
        response = await client.post(f"{TERMINALS}/create", json={}, headers=headers)
        body = await response.json()
        assert response.status == 201, body
        return str(body["data"]["sessionId"])

    ids = await asyncio.gather(*(create() for _ in range(6)))
    assert len(set(ids)) == 1
    assert [owned.key for owned, _ in await replicas.owners.held(ann.id)] == ids[:1]
