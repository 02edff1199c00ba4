"""The workspace quota across replicas: two real servers on one root and one database (as two
pods share a volume and a database), on SQLite and PostgreSQL. Usage and the room writes under
way hold are shared in the database, so an upload through one replica counts what the other
holds or has just written, and the room a replica that died held comes back after its lease.
The scan interval is an hour throughout: no replica's own scan could see the other's writes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from stockfolio.workspace.v1 import workspace_pb2, workspace_pb2_grpc

from services.runtime.db import Database
from services.workspace.quota import Quotas, Usage, measure
from tests.conftest import connections_refused, free_port
from tests.integration.workspace_harness import (
    StartWorkspace,
    User,
    WorkspaceService,
    git,
    held_upload,
    upload,
)
from tests.rpc_errors import error_metadata, expect_error, reason
from tests.waiting import until, until_async

W = workspace_pb2
MB = 1024 * 1024
QUOTA = {"WORKSPACE_QUOTA_BYTES": str(MB), "WORKSPACE_QUOTA_SCAN_INTERVAL": "3600"}
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Costs:
    """Transactions and statements the workspace database was asked for (BEGINs not counted:
    only SQLite's are statements)."""

    transactions: int = 0
    statements: int = 0


@pytest.fixture
def database_costs(workspace_database_url: str) -> Iterator[Costs]:
    """What the workspace database (not the users one) is asked for, from now on, by any engine
    on it: counted by SQLAlchemy's events."""
    database = make_url(workspace_database_url).database
    costs = Costs()

    def statement(connection: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if connection.engine.url.database == database and not sql.startswith("BEGIN"):
            costs.statements += 1

    def ended(connection: Any) -> None:
        if connection.engine.url.database == database:
            costs.transactions += 1

    hooks = (("before_cursor_execute", statement), ("commit", ended), ("rollback", ended))
    for name, hook in hooks:
        event.listen(Engine, name, hook)
    try:
        yield costs
    finally:
        for name, hook in hooks:
            event.remove(Engine, name, hook)


class TwoReplicas(NamedTuple):
    one: WorkspaceService
    two: WorkspaceService
    ada: User
    site: workspace_pb2.Project
    folder: Path  # Ada's


@contextlib.asynccontextmanager
async def two_replicas(start_workspace: StartWorkspace) -> AsyncIterator[TwoReplicas]:
    """Two replicas with the 1 MB quota, each scanning a user's folder once an hour, and Ada's
    project "site" made through the first."""
    async with start_workspace(**QUOTA) as one, start_workspace(**QUOTA) as two:
        ada = await one.user()
        site = await one.project(ada, "site")
        yield TwoReplicas(one, two, ada, site, one.root / ada.id)


async def test_a_small_write_costs_the_quota_two_transactions_and_a_refused_one_one(
    start_workspace: StartWorkspace, database_costs: Costs
) -> None:
    """A CreateFile of 1 KiB, its user's usage fresh: one transaction finds the project, one
    checks by its id, under the write's locks, that it is still there (project_writes.py), one
    takes the room (the usage read in it), one counts the write and gives the room back. Before:
    the usage was read in a transaction of its own, and a refused write dropped a row it had
    never made."""
    async with start_workspace(**QUOTA) as ws:
        ada = await ws.user()
        site = await ws.project(ada, "site")
        free = MB - measure(ws.root / ada.id).bytes

        async def costs(content: str, path: str) -> tuple[int, int]:
            before = Costs(database_costs.transactions, database_costs.statements)
            try:
                await ws.stub.CreateFile(
                    W.CreateFileRequest(project=site.id, path=path, content=content),
                    metadata=ada.metadata,
                )
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            return (
                database_costs.transactions - before.transactions,
                database_costs.statements - before.statements,
            )

        # Project, and again under the locks; then the room: its row locked, the others' room
        # summed, its own made; then the usage counted (one UPDATE ... RETURNING), the change
        # logged, the room deleted.
        assert await costs("x" * 1024, "small.txt") == (4, 8)
        assert await costs("x" * 1024, "again.txt") == (4, 8)
        # Refused in its take: nothing to give back.
        assert await costs("x" * free, "large.txt") == (3, 4)
        assert (ws.root / ada.id / "site" / "small.txt").stat().st_size == 1024
        assert not (ws.root / ada.id / "site" / "large.txt").exists()


async def test_two_uploads_at_once_through_two_replicas_cannot_both_fit(
    start_workspace: StartWorkspace,
) -> None:
    async with two_replicas(start_workspace) as (one, two, ada, site, folder):
        size = (MB - measure(folder).bytes) * 3 // 5  # one fits, two do not
        first, hold = await held_upload(one, ada, site.id, "one.bin", size)
        # The first upload holds its room, its call unfinished: the second, through the other
        # replica, counts it.
        error = await expect_error(
            upload(two, ada, site.id, "two.bin", size), grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        hold.set()
        done = await first

        assert reason(error) == "QUOTA_EXCEEDED"
        assert error_metadata(error)["quota"] == "bytes"
        assert done.file.size == size
        assert not (folder / "site" / "two.bin").exists()
        assert measure(folder).bytes <= MB


async def test_an_upload_through_one_replica_counts_in_the_next_through_another(
    start_workspace: StartWorkspace,
) -> None:
    async with two_replicas(start_workspace) as (one, two, ada, site, folder):
        # The second replica measures the user's folder now (and, by its own clock, not again
        # for an hour).
        await two.stub.CreateFile(
            W.CreateFileRequest(project=site.id, path="note.txt", content="hello"),
            metadata=ada.metadata,
        )
        size = (MB - measure(folder).bytes) * 3 // 5
        first = await upload(one, ada, site.id, "one.bin", size)
        assert first.file.size == size

        error = await expect_error(
            upload(two, ada, site.id, "two.bin", size), grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        used = measure(folder).bytes
        assert reason(error) == "QUOTA_EXCEEDED"
        # What it counted: what is on disk (the first replica's upload too), and what the
        # refused upload had taken when its next chunk did not fit.
        assert used <= int(error_metadata(error)["usedBytes"]) <= MB
        assert not (folder / "site" / "two.bin").exists()
        assert used <= MB
        # The refused upload gave its room back: the second replica counts exactly the disk.
        error = await expect_error(
            two.stub.CreateFile(
                W.CreateFileRequest(project=site.id, path="c.txt", content="x" * (MB - used + 1)),
                metadata=ada.metadata,
            ),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        assert error_metadata(error)["usedBytes"] == str(used)


@contextlib.contextmanager
def replica_process(environ: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A workspace replica in its own process (so that it can be killed with -9), on the
    settings of `environ`; its process and address."""
    port, admin = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.workspace"],
        cwd=ROOT,
        env={
            **os.environ,
            **environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
            "WORKSPACE_PORT": str(port),
            "WORKSPACE_ADMIN_PORT": str(admin),
        },
        stdout=subprocess.DEVNULL,
    )
    try:
        yield process, f"127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(10)


@contextlib.asynccontextmanager
async def reached(
    address: str, like: WorkspaceService, who: User
) -> AsyncIterator[WorkspaceService]:
    """`like`, reached at `address` instead, once that server answers `who`."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = workspace_pb2_grpc.WorkspaceServiceStub(channel)

        async def answers() -> bool:
            try:
                await stub.ListProjects(W.ListProjectsRequest(), metadata=who.metadata)
            except grpc.aio.AioRpcError:
                return False
            return True

        await until_async(answers, f"the replica at {address} answering", within=30)
        yield WorkspaceService(
            stub, like.users, address, like.users_address, like.root, like.remotes, like.config
        )


async def test_a_note_saved_near_the_limit_fits_beside_an_upload_under_way(
    start_workspace: StartWorkspace,
) -> None:
    """20 KiB are free. A 4 KiB upload is under way through one replica (its stream still
    open): it took room ahead, not knowing its size, but half of what was free at most. A
    6 KiB note saved through the other replica fits beside it (before, the upload held all
    16 KiB of its step and the note was refused), and the upload then completes."""
    async with two_replicas(start_workspace) as (one, two, ada, site, folder):
        free = 20 * 1024
        await one.stub.CreateFile(
            W.CreateFileRequest(
                project=site.id,
                path="filler.txt",
                content="f" * (MB - measure(folder).bytes - free),
            ),
            metadata=ada.metadata,
        )
        assert measure(folder).bytes == MB - free
        first, hold = await held_upload(one, ada, site.id, "photo.bin", 4096)
        note = await two.stub.CreateFile(
            W.CreateFileRequest(project=site.id, path="note.txt", content="n" * 6144),
            metadata=ada.metadata,
        )
        hold.set()
        photo = await first

        assert (note.file.size, photo.file.size) == (6144, 4096)
        assert measure(folder).bytes == MB - free + 6144 + 4096


async def test_the_room_a_replica_that_died_held_comes_back_after_its_lease(
    start_workspace: StartWorkspace,
) -> None:
    settings = {**QUOTA, "WORKSPACE_QUOTA_LEASE": "5"}
    async with start_workspace(**settings) as survivor:
        ada = await survivor.user()
        site = await survivor.project(ada, "site")
        folder = survivor.root / ada.id
        size = (MB - measure(folder).bytes) * 3 // 5
        with replica_process(dict(survivor.config.environ)) as (process, address):
            async with reached(address, survivor, ada) as doomed:
                held, _hold = await held_upload(doomed, ada, site.id, "held.bin", size)

                async def create(path: str) -> grpc.StatusCode:
                    try:
                        await survivor.stub.CreateFile(
                            W.CreateFileRequest(project=site.id, path=path, content="x" * size),
                            metadata=ada.metadata,
                        )
                    except grpc.aio.AioRpcError as error:
                        return error.code()
                    return grpc.StatusCode.OK

                # Alive, the replica renews its upload's lease: the room stays held.
                assert await create("early.txt") == grpc.StatusCode.RESOURCE_EXHAUSTED
                process.send_signal(signal.SIGKILL)
                assert process.wait(10) == -signal.SIGKILL
                with pytest.raises(grpc.aio.AioRpcError):
                    await held

                async def fits() -> bool:
                    code = await create("late.txt")
                    assert code in (grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED), code
                    return code is grpc.StatusCode.OK

                await until_async(fits, "the dead replica's room given back", within=30)
        assert (folder / "site" / "late.txt").stat().st_size == size
        assert not (folder / "site" / "held.bin").exists()
        assert measure(folder).bytes <= MB


async def test_a_pull_through_one_replica_counts_an_upload_under_way_through_another(
    start_workspace: StartWorkspace, tmp_path: Path
) -> None:
    """An upload holds 3/5 of the free room on one replica; a pull that brings about half of
    it through the other fits alone, not beside the upload: one of them must be refused."""
    async with two_replicas(start_workspace) as (one, two, ada, site, folder):
        bare = await one.published(ada, site)
        free = MB - measure(folder).bytes
        clone = tmp_path / "elsewhere"
        git(tmp_path, "clone", "--quiet", bare.as_uri(), str(clone))
        (clone / "theirs.bin").write_bytes(os.urandom(free // 4))  # incompressible
        git(clone, "add", "theirs.bin")
        git(clone, "commit", "--quiet", "-m", "Theirs")
        git(clone, "push", "--quiet", "origin", "main")

        size = free * 3 // 5
        first, hold = await held_upload(one, ada, site.id, "one.bin", size)
        pulled: grpc.StatusCode = grpc.StatusCode.OK
        try:
            await two.stub.GitPull(W.GitPullRequest(project=site.id), metadata=ada.metadata)
        except grpc.aio.AioRpcError as error:
            pulled = error.code()
        hold.set()
        uploaded: grpc.StatusCode = grpc.StatusCode.OK
        try:
            await first
        except grpc.aio.AioRpcError as error:
            uploaded = error.code()
        used = measure(folder).bytes
        print(f"pull: {pulled.name}, upload: {uploaded.name}, used {used} of {MB}")
        assert used <= MB


async def test_a_write_while_the_database_is_down_answers_unavailable(
    start_workspace: StartWorkspace, workspace_database_url: str
) -> None:
    if workspace_database_url.startswith("sqlite"):
        pytest.skip("an outage of PostgreSQL")
    name = workspace_database_url.rsplit("/", 1)[1]
    async with start_workspace(**QUOTA) as ws:
        ada = await ws.user()
        site = await ws.project(ada, "site")
        codes: list[grpc.StatusCode] = []
        with connections_refused(name):
            for path in ("a.txt", "b.txt", "c.txt"):
                try:
                    await ws.stub.CreateFile(
                        W.CreateFileRequest(project=site.id, path=path, content="hi"),
                        metadata=ada.metadata,
                        timeout=20,
                    )
                    codes.append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as error:
                    codes.append(error.code())
            try:
                await upload(ws, ada, site.id, "d.bin", 3 * MB // 4)
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as error:
                codes.append(error.code())
        print("codes while down:", [c.name for c in codes])
        assert codes == [grpc.StatusCode.UNAVAILABLE] * 4
        assert not (ws.root / ada.id / "site" / "a.txt").exists()


async def test_an_upload_whose_accounting_fails_is_not_left_on_disk_uncounted(
    start_workspace: StartWorkspace, workspace_database_url: str
) -> None:
    """The database goes away after an upload took its room, before it is accounted: the
    upload answers UNAVAILABLE; its file must not stay on disk uncounted once the database is
    back (the scan interval is an hour), or the next upload passes the quota."""
    if workspace_database_url.startswith("sqlite"):
        pytest.skip("an outage of PostgreSQL")
    name = workspace_database_url.rsplit("/", 1)[1]
    async with start_workspace(**QUOTA, WORKSPACE_QUOTA_LEASE="1") as ws:
        ada = await ws.user()
        site = await ws.project(ada, "site")
        folder = ws.root / ada.id
        size = (MB - measure(folder).bytes) * 3 // 5  # one fits, two do not
        first, hold = await held_upload(ws, ada, site.id, "one.bin", size)
        with connections_refused(name):
            hold.set()
            code = grpc.StatusCode.OK
            try:
                await first
            except grpc.aio.AioRpcError as error:
                code = error.code()
        on_disk = (folder / "site" / "one.bin").exists()
        print(f"first upload: {code.name}, its file on disk: {on_disk}")

        async def second() -> grpc.StatusCode:
            try:
                await upload(ws, ada, site.id, "two.bin", size)
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        def lapsed() -> bool:
            url = workspace_database_url.replace("+psycopg", "").replace("+asyncpg", "")
            with psycopg.connect(url, autocommit=True) as db:
                row = db.execute(
                    "SELECT count(*) FROM quota_reservations"
                    " WHERE expires_at > now() AT TIME ZONE 'utc'"
                ).fetchone()
            return row is not None and row[0] == 0

        await until(lapsed, "the first upload's reservation lapsed", within=30)
        code = await second()
        print(f"second upload: {code.name}")
        print(f"used {measure(folder).bytes} of {MB}")
        assert measure(folder).bytes <= MB


async def test_lease_renewals_and_pruning_at_once_never_deadlock(
    workspace_database_url: str, tmp_path: Path
) -> None:
    """One replica renews the leases of its uploads while another, whose clock runs ahead (to
    which those leases look lapsed), prunes them: both change the same rows, and must never
    wait for each other in a circle (PostgreSQL then cancels one with a deadlock error). The
    rows lie in the table in one order and lapse in the other (room taken at various times),
    among many other users' reservations, as in production: the renewal finds its rows by id,
    the pruning by expiry."""
    if workspace_database_url.startswith("sqlite"):
        pytest.skip("row locks of PostgreSQL (SQLite has one writer at a time)")
    start = datetime.now(UTC)
    renewer_now = [start]
    renewer_db, pruner_db = Database(workspace_database_url), Database(workspace_database_url)
    limits = Usage(1 << 40, 1 << 30)
    renewer = Quotas(renewer_db, limits, interval=3600, lease=60, clock=lambda: renewer_now[0])
    pruner = Quotas(
        pruner_db, limits, interval=3600, lease=60, clock=lambda: start + timedelta(days=1)
    )
    folder = tmp_path / "uploader"
    folder.mkdir()
    try:
        async with renewer_db.transaction() as tx:
            await tx.execute(
                text(
                    "INSERT INTO quota_reservations (id, user_id, bytes, files, expires_at)"
                    " SELECT md5(n::text), 'other-' || (n % 500), 1, 0, '2100-01-01'"
                    " FROM generate_series(1, 20000) AS n"
                )
            )
        async with renewer_db.transaction() as tx:
            await tx.execute(text("ANALYZE quota_reservations"))
        failures: list[BaseException] = []
        for _ in range(10):
            uploads = []
            for n in range(100):  # each later in the table, earlier to lapse
                renewer_now[0] = start - timedelta(seconds=n)
                uploads.append(await renewer.reserve(folder, size=1))
            renewer_now[0] = start - timedelta(hours=1)  # every lease live, to the renewer
            done = await asyncio.gather(renewer.renew(), pruner.prune(), return_exceptions=True)
            failures += [d for d in done if isinstance(d, BaseException)]
            for room in uploads:
                room.settled()  # their rows are gone: nothing left to give back
        assert failures == []
    finally:
        await renewer_db.close()
        await pruner_db.close()
