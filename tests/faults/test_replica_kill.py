"""kill -9 one of two replicas of users and of workspace (stateless: PostgreSQL and one shared
workspace folder hold their state) under a steady load of reads and idempotent writes: the
client, retrying with the same request (and the same Idempotency-Key), sees every write
through; nothing written is lost, nothing doubled.

The scenario runs once; each test below checks one promise of what it recorded."""

from __future__ import annotations

import asyncio
import re
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.faults import infrastructure as infra

KILLED = ("users", "workspace")
WARM_UP = 30  # confirmed writes of each kind before the kill
BURST = 40  # new files sent together just before the kill (and a quarter as many renames)
AFTER = 5.0  # seconds of load after the kill
RETRIED = frozenset({0, 409, 502, 503, 504})
SETTLE_WITHIN = 15.0
# The temporary file of a write in progress (services/workspace/paths.py atomic_write), were
# it ever made in the project rather than in the volume's staging folder.
PARTIAL = re.compile(r"(^|/)\.[^/]+\.\w{8}\.tmp$")


@dataclass
class Writer:
    """One user writing: their name, over and over (a PUT, retried as is), and new files in
    their project (a POST with an Idempotency-Key, retried with the same key)."""

    client: infra.Client
    user_id: str
    token: str
    project: str
    load: infra.Load
    names: list[str] = field(default_factory=list)  # confirmed, in order
    files: dict[str, str] = field(default_factory=dict)  # confirmed path -> content
    unsettled: set[str] = field(default_factory=set)
    refused: list[tuple[str, int]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def attempt(self, what: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        started = time.monotonic()
        try:
            answer = await self.client.call(method, path, token=self.token, within=15, **kwargs)
        except (aiohttp.ClientError, TimeoutError):
            self.load.note(what, 0, started)
            return 0, None
        self.load.note(what, answer.status, started)
        return answer.status, answer.body

    async def until_settled(self, what: str, key: str, method: str, path: str, **kw: Any) -> Any:
        """The same request until it gets a 2xx (its body) or a final refusal (None)."""
        self.unsettled.add(key)
        while True:
            status, body = await self.attempt(what, method, path, **kw)
            if 200 <= status < 300:
                self.unsettled.discard(key)
                return body
            if status not in RETRIED:
                self.unsettled.discard(key)
                self.refused.append((what, status))
                return None
            if self.stop.is_set():
                return None
            await asyncio.sleep(0.05)

    async def read_me(self) -> None:
        status, body = await self.attempt("read me", "GET", "/api/v1/users/me")
        if status == 200:
            assert body["data"]["id"] == self.user_id

    async def read_file(self) -> None:
        path = f"/api/v1/files/kept.txt?project={self.project}"
        status, body = await self.attempt("read file", "GET", path)
        if status == 200:
            assert body["data"]["content"] == "kept\n"

    async def rename(self) -> None:
        name = f"Name {len(self.names) + 1}"
        body = await self.until_settled(
            "rename", name, "PUT", f"/api/v1/users/{self.user_id}", body={"name": name}
        )
        if body is not None:
            assert body["data"]["name"] == name
            self.names.append(name)

    async def write_file(self) -> None:
        key = f"faults-{uuid.uuid4().hex}"
        path, content = f"load/{key}.txt", f"{key}\n"
        body = await self.until_settled(
            "write file",
            key,
            "POST",
            "/api/v1/files",
            body={"project": self.project, "path": path, "content": content},
            headers={"Idempotency-Key": key},
        )
        if body is not None:
            assert body["data"]["path"] == path
            self.files[path] = content


@dataclass(frozen=True)
class Kill:
    load: infra.Load
    killed_at: float
    writers: list[Writer]
    exit_codes: dict[str, int | None]
    name_after: dict[str, str]
    files_after: dict[str, dict[str, str | None]]
    listed: dict[str, list[str]]

    @property
    def unsettled(self) -> int:
        return sum(len(w.unsettled) for w in self.writers)


async def new_writer(client: infra.Client, load: infra.Load) -> Writer:
    user_id, token = await client.register()
    project = await client.call(
        "POST", "/api/v1/workspace/projects", token=token, body={"name": "site"}
    )
    assert project.status == 201, project.body
    project_id = project.body["data"]["id"]
    kept = await client.call(
        "POST",
        "/api/v1/files",
        token=token,
        body={"project": project_id, "path": "kept.txt", "content": "kept\n"},
    )
    assert kept.status == 201, kept.body
    return Writer(client, user_id, token, project_id, load)


async def kill_under_load(
    root: Path, cluster: infra.PrivatePostgres, cache: infra.PrivateRedis
) -> Kill:
    replicas = {"users": 2, "workspace": 2}
    async with infra.under_load(root, replicas, cluster, cache) as (system, client, load):
        writers = [await new_writer(client, load) for _ in range(2)]
        workers = [step for w in writers for step in (w.read_me, w.read_file, w.rename)]
        workers += [w.write_file for w in writers for _ in range(2)]
        async with infra.steady(load, workers):

            async def warmed_up() -> bool:
                names = sum(len(w.names) for w in writers)
                files = sum(len(w.files) for w in writers)
                return min(names, files) >= WARM_UP

            await infra.poll(warmed_up, f"{WARM_UP} writes of each kind before the kill", within=60)
            doomed = [system.replicas[name][0] for name in KILLED]
            burst = [asyncio.create_task(writers[i % 2].write_file()) for i in range(BURST)]
            burst += [asyncio.create_task(writers[i % 2].rename()) for i in range(BURST // 4)]
            # In flight: each write is, by then, somewhere between its claim and its answer.
            await asyncio.sleep(0.1)
            killed_at = time.monotonic()
            for replica in doomed:
                replica.signal(signal.SIGKILL)
            await asyncio.sleep(AFTER)
            await asyncio.wait(burst, timeout=SETTLE_WITHIN)
            for writer in writers:
                writer.stop.set()
            await asyncio.gather(*burst)
        exit_codes = {r.name: r.popen.poll() if r.popen else None for r in doomed}
        name_after: dict[str, str] = {}
        files_after: dict[str, dict[str, str | None]] = {}
        listed: dict[str, list[str]] = {}
        for writer in writers:
            me = await client.call("GET", "/api/v1/users/me", token=writer.token)
            name_after[writer.user_id] = me.body["data"]["name"]
            contents: dict[str, str | None] = {}
            for path in writer.files:
                got = await client.call(
                    "GET", f"/api/v1/files/{path}?project={writer.project}", token=writer.token
                )
                contents[path] = got.body["data"]["content"] if got.status == 200 else None
            files_after[writer.user_id] = contents
            entries = await client.all_pages(
                f"/api/v1/files?project={writer.project}&path=load", writer.token
            )
            listed[writer.user_id] = [e["path"] for e in entries]
    return Kill(load, killed_at, writers, exit_codes, name_after, files_after, listed)


@pytest.fixture(scope="module")
def kill(tmp_path_factory: pytest.TempPathFactory) -> Kill:
    seen = infra.run_on_private_stores(tmp_path_factory.mktemp("replica-kill"), kill_under_load)
    statuses = Counter(o.status for o in seen.load.outcomes)
    after = [o for o in seen.load.outcomes if o.at > seen.killed_at]
    # 409: a key left in flight by the killed replica until its lease ends, not the kill itself.
    failed = [o.at - seen.killed_at for o in after if o.status not in {200, 201, 409}]
    infra.RESULTS.append(
        infra.FaultResult(
            fault="kill -9 one of 2 users and one of 2 workspace replicas",
            load=(
                "2 users: reads of me and a file, renames (PUT), new files (POST + key); "
                f"a burst of {BURST} files at the kill"
            ),
            requests=len(seen.load.outcomes),
            failures=seen.unsettled + sum(len(w.refused) for w in seen.writers),
            recovery=max(failed) if failed else 0.0,
            note=(
                f"attempt statuses {dict(sorted(statuses.items()))}; "
                f"{sum(len(w.files) for w in seen.writers)} files and "
                f"{sum(len(w.names) for w in seen.writers)} renames confirmed; "
                f"{seen.unsettled} writes never settled (409 IN_PROGRESS); "
                f"{sum(1 for ps in seen.listed.values() for p in ps if PARTIAL.search(p))} "
                "partial files left; recovery: the last "
                "503 after the kill"
            ),
        )
    )
    return seen


def test_both_replicas_died_of_the_kill(kill: Kill) -> None:
    assert kill.exit_codes == dict.fromkeys(KILLED, -signal.SIGKILL)


# A read the killed replica had taken (even one it had begun to answer, which gRPC's own
# retryPolicy no longer retries) is tried once more on the other (services/runtime/channels.py).
def test_no_read_fails(kill: Kill) -> None:
    reads = [o for o in kill.load.outcomes if o.what.startswith("read")]
    assert reads and Counter(o.status for o in reads if o.status != 200) == Counter()


def test_no_write_is_refused(kill: Kill) -> None:
    assert [w.refused for w in kill.writers] == [[], []]


def test_no_confirmed_write_is_lost_or_doubled(kill: Kill) -> None:
    for writer in kill.writers:
        assert kill.name_after[writer.user_id] == writer.names[-1]
        assert kill.files_after[writer.user_id] == writer.files
        listed = [p for p in kill.listed[writer.user_id] if not PARTIAL.search(p)]
        assert sorted(set(listed)) == sorted(listed)
        assert (
            set(writer.files)
            <= set(listed)
            <= set(writer.files) | {f"load/{key}.txt" for key in writer.unsettled}
        )


# Idempotency claims are 10 s leases (services/runtime/idempotency.py): a key whose request
# died with its replica or its database is claimed again by a retry once the lease runs out.
def test_every_idempotent_write_is_settled_by_retrying(kill: Kill) -> None:
    assert kill.unsettled == 0


# A write is made in the volume's hidden staging folder and renamed into place: one the kill
# cuts short leaves its temporary file there, never in the project (services/workspace/
# staging.py sweeps it once stale).
def test_a_write_cut_short_by_the_kill_leaves_no_partial_file(kill: Kill) -> None:
    partial = [p for paths in kill.listed.values() for p in paths if PARTIAL.search(p)]
    assert partial == []
