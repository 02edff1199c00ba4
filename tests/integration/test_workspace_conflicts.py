"""Transactions of the workspace service that lose to another one on PostgreSQL (a deadlock,
SQLSTATE 40P01), provoked for real: the test holds rows in the other order from the service's,
as another program on the database (a migration, an administrator's session, a replica of an
older release) would. A conflict is not an outage: the service runs its transaction again and
the write completes, whole and counted; when every run conflicts it answers ABORTED (409,
TRANSACTION_CONFLICT: retry it) with nothing written. An outage still answers UNAVAILABLE and
counts a write made later (test_workspace_quota_replicas.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import psycopg
import pytest
from stockfolio.workspace.v1 import workspace_pb2

from services.runtime.db import CONFLICT_RUNS
from services.workspace.files import blob_sha
from services.workspace.quota import Usage, measure
from services.workspace.staging import STAGING
from tests.conftest import POSTGRES_ADMIN_URL
from tests.integration.workspace_harness import (
    Client,
    StartWorkspace,
    User,
    WorkspaceService,
    bearer,
    held_upload,
)
from tests.rpc_errors import expect_error, reason
from tests.waiting import until_async

W = workspace_pb2
MB = 1024 * 1024
QUOTA = {"WORKSPACE_QUOTA_BYTES": str(MB), "WORKSPACE_QUOTA_SCAN_INTERVAL": "3600"}
# A room take that meets the test's lock waits in this statement (INSERT ... ON CONFLICT: the
# reservation's row, after the user's usage row); a count of a change in this one.
TAKING = "INSERT INTO quota_reservations"
COUNTING = "DELETE FROM quota_reservations"


@pytest.fixture
def postgres_only(workspace_database_url: str) -> str:
    if workspace_database_url.startswith("sqlite"):
        pytest.skip("deadlocks of PostgreSQL's row locks (SQLite has one writer at a time)")
    return workspace_database_url.replace("+psycopg", "")


class Blocker:
    """Another session on the workspace database, which takes the rows of one user's quota in
    the other order from the service's: its reservation's row first, then (when the service
    holds the user's usage row and waits for the reservation's) the usage row, a circle of
    waits. Its own deadlock check is put off, so PostgreSQL's check in the service's session
    (after deadlock_timeout, 1 s) finds the circle and cancels the service's transaction."""

    def __init__(self, url: str, user: str) -> None:
        self.url, self.user = url, user
        self.database = url.rsplit("/", 1)[1]
        self.deadlocks = 0

    @contextlib.asynccontextmanager
    async def holding_reservation(self) -> AsyncIterator[None]:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as self.own:
            await self.own.execute("SET deadlock_timeout = '60s'")
            reservation = await self.reservation()
            await self.own.execute("BEGIN")
            await self.own.execute(
                "SELECT 1 FROM quota_reservations WHERE id = %s FOR UPDATE", (reservation,)
            )
            try:
                yield
            finally:
                await self.own.execute("ROLLBACK")

    async def reservation(self) -> str:
        """The id of the user's one reservation (a write under way holds it)."""
        found: list[str] = []

        async def one() -> bool:
            rows = await self.own.execute(
                "SELECT id FROM quota_reservations WHERE user_id = %s", (self.user,)
            )
            found[:] = [row[0] for row in await rows.fetchall()]
            return len(found) == 1

        await until_async(one, "the write's reservation")
        return found[0]

    async def waiting_statement(self) -> str | None:
        """The statement of another session of the database waiting for a lock, if any."""
        async with await psycopg.AsyncConnection.connect(POSTGRES_ADMIN_URL) as admin:
            rows = await admin.execute(
                "SELECT query FROM pg_stat_activity WHERE datname = %s"
                " AND wait_event_type = 'Lock' AND pid <> %s",
                (self.database, self.own.info.backend_pid),
            )
            found = await rows.fetchone()
        return str(found[0]) if found else None

    async def deadlock(self, statement: str, call: asyncio.Future[Any], times: int) -> None:
        """Each time the service waits for the reservation's row in `statement` (holding the
        usage row), close the circle: take the usage row, which waits until PostgreSQL
        cancels the service's transaction. At most `times` times; none once `call` is done
        or the service waits in another statement (giving its room back)."""
        while self.deadlocks < times and not call.done():
            waiting = await self.waiting_statement()
            if waiting is None:
                await asyncio.sleep(0.02)
                continue
            if not waiting.startswith(statement):
                return
            await self.own.execute("SAVEPOINT circle")
            await self.own.execute(
                "UPDATE quota_usage SET seq = seq WHERE user_id = %s", (self.user,)
            )
            # The usage row is let go (the reservation's stays held): a run again meets it.
            await self.own.execute("ROLLBACK TO SAVEPOINT circle")
            self.deadlocks += 1


async def recorded(url: str, user: str) -> tuple[Usage, int]:
    """The user's usage as the replicas share it, and how many reservations hold room."""
    async with await psycopg.AsyncConnection.connect(url) as db:
        usage = await (
            await db.execute("SELECT bytes, files FROM quota_usage WHERE user_id = %s", (user,))
        ).fetchone()
        held = await (
            await db.execute("SELECT count(*) FROM quota_reservations WHERE user_id = %s", (user,))
        ).fetchone()
    assert usage is not None and held is not None
    return Usage(int(usage[0]), int(usage[1])), int(held[0])


def paused_upload(
    ws: WorkspaceService, who: User, project: str, path: str, first: int, rest: int
) -> tuple[asyncio.Task[W.UploadFileResponse], asyncio.Event]:
    """An upload of `first` zero bytes, then, once the event returned is set, `rest` more:
    its room is taken for the first part (and some ahead), then again for the rest."""
    go_on = asyncio.Event()

    async def messages() -> AsyncIterator[W.UploadFileRequest]:
        message = W.UploadFileRequest(project=project, path=path)
        message.body.data = b"\0" * first
        yield message
        await go_on.wait()
        more = W.UploadFileRequest()
        more.body.data = b"\0" * rest
        yield more

    return asyncio.ensure_future(ws.stub.UploadFile(messages(), metadata=who.metadata)), go_on


async def test_an_upload_whose_room_taking_deadlocks_takes_it_again_and_completes(
    start_workspace: StartWorkspace, postgres_only: str
) -> None:
    """The upload's second take of room meets the blocker: PostgreSQL cancels it as
    deadlocked; the service runs it again (the blocker has let go) and the upload completes,
    its bytes counted once. Before: UNAVAILABLE, "the database is unavailable", nothing
    written, though the database had answered."""
    async with start_workspace(**QUOTA) as ws:
        ada = await ws.user()
        site = await ws.project(ada, "site")
        folder = ws.root / ada.id
        size = 8 * 1024 + 64 * 1024
        upload, go_on = paused_upload(ws, ada, site.id, "photo.bin", 8 * 1024, 64 * 1024)
        blocker = Blocker(postgres_only, ada.id)
        async with blocker.holding_reservation():
            go_on.set()  # the rest needs more room than the first take held
            await blocker.deadlock(TAKING, upload, times=1)
        reply = await upload

        assert blocker.deadlocks == 1
        assert (reply.file.size, reply.file.sha) == (size, blob_sha(b"\0" * size))
        assert (folder / "site" / "photo.bin").read_bytes() == b"\0" * size
        assert await recorded(postgres_only, ada.id) == (measure(folder), 0)


async def test_a_write_whose_count_deadlocks_is_counted_at_once(
    start_workspace: StartWorkspace, postgres_only: str
) -> None:
    """The upload's bytes are written; counting them (and giving its room back) meets the
    blocker and is cancelled as deadlocked: the service runs the count again, so the usage
    every replica reads holds the file as soon as the upload has answered. Before: the count
    was left for the lease loop, as in an outage (20 s later here), the file uncounted and
    its room held until then."""
    async with start_workspace(**QUOTA) as ws:
        ada = await ws.user()
        site = await ws.project(ada, "site")
        folder = ws.root / ada.id
        size = 100 * 1024
        upload, hold = await held_upload(ws, ada, site.id, "photo.bin", size)
        blocker = Blocker(postgres_only, ada.id)
        async with blocker.holding_reservation():
            hold.set()
            await blocker.deadlock(COUNTING, upload, times=1)
        reply = await upload

        assert blocker.deadlocks == 1
        assert reply.file.size == size
        assert await recorded(postgres_only, ada.id) == (measure(folder), 0)


async def test_an_upload_whose_every_run_deadlocks_is_409_and_leaves_nothing(
    start_workspace: StartWorkspace, postgres_only: str
) -> None:
    """Every run of the upload's second take of room meets the blocker: after CONFLICT_RUNS
    runs the service gives up with ABORTED, which the facade answers 409 TRANSACTION_CONFLICT
    saying to retry; nothing of the upload is on disk nor counted, and the room it held is
    given back. Before: 503 UNAVAILABLE after the first."""
    async with start_workspace(**QUOTA) as ws:
        ada = await ws.user()
        site = await ws.project(ada, "site")
        folder = ws.root / ada.id
        before = measure(folder)
        upload, go_on = paused_upload(ws, ada, site.id, "photo.bin", 8 * 1024, 64 * 1024)
        blocker = Blocker(postgres_only, ada.id)
        async with blocker.holding_reservation():
            go_on.set()
            await blocker.deadlock(TAKING, upload, times=CONFLICT_RUNS)
        error = await expect_error(upload, grpc.StatusCode.ABORTED)

        assert blocker.deadlocks == CONFLICT_RUNS
        assert reason(error) == "TRANSACTION_CONFLICT"
        assert "retry" in (error.details() or "")
        assert not (folder / "site" / "photo.bin").exists()
        assert list((ws.root / STAGING).iterdir()) == []
        assert measure(folder) == before
        assert await recorded(postgres_only, ada.id) == (before, 0)


async def test_the_facade_answers_a_transaction_conflict_409_saying_to_retry(
    postgres_only: str, workspace: WorkspaceService, facade: Client
) -> None:
    """The same, through REST: the upload's body arrives in two parts, the second after every
    run of its take of room has deadlocked."""
    ada = await workspace.user()
    site = await workspace.project(ada, "site")
    folder = workspace.root / ada.id
    go_on = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"\0" * 1024
        await go_on.wait()
        yield b"\0" * (3 * MB)  # past the 1 MiB a first take holds ahead

    answer = asyncio.ensure_future(
        facade.post(
            f"/api/v1/files:upload?project={site.id}&path=photo.bin",
            data=body(),
            headers={**bearer(ada), "Content-Type": "application/octet-stream"},
        )
    )
    blocker = Blocker(postgres_only, ada.id)
    async with blocker.holding_reservation():
        go_on.set()
        await blocker.deadlock(TAKING, answer, times=CONFLICT_RUNS)
    response = await answer
    envelope = await response.json()

    assert response.status == 409
    assert (envelope["success"], envelope["error"]) == (False, "TRANSACTION_CONFLICT")
    assert envelope["message"] == (
        "the change met another one made at the same moment and was not made; retry it"
    )
    assert not (folder / "site" / "photo.bin").exists()
