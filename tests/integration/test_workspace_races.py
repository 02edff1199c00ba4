"""Workspace writes at once, through the real service: a project created while an upload is
under way counts the room the upload holds (the user never ends past the quota), two uploads
of one new file count its bytes once, and git commits of one project through two replicas on
one volume queue behind one lock (none fails on the other's .git/index.lock, and a commit
taken back for the quota takes no other commit with it). SQLite only."""

from __future__ import annotations

import asyncio
import os

import grpc
import pytest
from stockfolio.workspace.v1 import workspace_pb2

from services.workspace.quota import Reservation, measure
from tests.integration.workspace_harness import StartWorkspace, User, WorkspaceService, upload
from tests.rpc_errors import error_metadata, expect_error, reason
from tests.waiting import until

W = workspace_pb2
MB = 1024 * 1024


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


async def test_a_project_created_during_an_upload_counts_the_room_the_upload_holds(
    start_workspace: StartWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with start_workspace(WORKSPACE_QUOTA_BYTES=str(MB)) as ws:
        ada = await ws.user()
        site = await ws.project(ada, "site")
        folder = ws.root / ada.id
        size = MB - measure(folder).bytes - 10_000  # a new project's repository is larger
        # The room the service has taken so far (watched, not changed): every chunk it has
        # read grows the upload's reservation.
        taken: list[int] = []
        grow = Reservation.grow

        async def watched(
            self: Reservation, *, size: int = 0, files: int = 0, ahead: bool = False
        ) -> None:
            await grow(self, size=size, files=files, ahead=ahead)
            taken.append(size)

        monkeypatch.setattr(Reservation, "grow", watched)
        sent, hold = asyncio.Event(), asyncio.Event()
        held = asyncio.create_task(upload(ws, ada, site.id, "big.bin", size, sent=sent, hold=hold))
        await asyncio.wait_for(sent.wait(), 10)
        # Sent is not yet read: the service has taken every chunk in, and reserved its room.
        await until(lambda: sum(taken) >= size, "the upload's room reserved")
        error = await expect_error(
            ws.stub.CreateProject(W.CreateProjectRequest(name="second"), metadata=ada.metadata),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        hold.set()
        uploaded = await held

        assert reason(error) == "QUOTA_EXCEEDED"
        assert error_metadata(error)["quota"] == "bytes"
        assert uploaded.file.size == size
        assert not (folder / "second").exists()
        listed = await ws.stub.ListProjects(W.ListProjectsRequest(), metadata=ada.metadata)
        assert [p.name for p in listed.projects] == ["site"]
        assert measure(folder).bytes <= MB


async def test_two_uploads_of_one_new_file_count_its_bytes_once(
    start_workspace: StartWorkspace,
) -> None:
    """A double click, or a retry: the second upload replaces the first's file. Counted twice,
    the user's usage would refuse a write that fits until the next scan (a minute)."""
    async with start_workspace(WORKSPACE_QUOTA_BYTES=str(MB)) as ws:
        ada = await ws.user()
        site = await ws.project(ada, "site")
        folder = ws.root / ada.id
        size = 450_000
        sent, hold = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(upload(ws, ada, site.id, "a.bin", size, sent=sent, hold=hold))
        await asyncio.wait_for(sent.wait(), 10)
        await asyncio.sleep(0.2)
        second = asyncio.create_task(upload(ws, ada, site.id, "a.bin", size))
        await asyncio.sleep(0.3)  # the second has begun, and waits for the file's lock
        hold.set()
        answers = await asyncio.gather(first, second)
        assert [a.file.size for a in answers] == [size, size]
        assert (folder / "site" / "a.bin").stat().st_size == size

        third = await upload(ws, ada, site.id, "b.bin", size)  # fits: the service agrees
        assert third.file.size == size
        used = measure(folder).bytes
        error = await expect_error(
            ws.stub.CreateFile(
                W.CreateFileRequest(project=site.id, path="c.txt", content="x" * (MB - used + 1)),
                metadata=ada.metadata,
            ),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        # What the service counts is what is on disk: a.bin once.
        assert error_metadata(error)["usedBytes"] == str(used)


async def commit(replica: WorkspaceService, who: User, project: str, path: str) -> str:
    """Commit `path` through `replica`; its sha, or the failure's status and message."""
    try:
        reply: W.GitCommitResponse = await replica.stub.GitCommit(
            W.GitCommitRequest(project=project, message=path, paths=[path]),
            metadata=who.metadata,
        )
    except grpc.aio.AioRpcError as error:
        return f"{error.code().name}: {error.details()}"
    return reply.commit


async def subjects(replica: WorkspaceService, who: User, project: str) -> list[str]:
    log = await replica.stub.GitLog(W.GitLogRequest(project=project), metadata=who.metadata)
    return [c.subject for c in log.commits]


async def test_commits_through_two_replicas_on_one_volume_all_succeed(
    start_workspace: StartWorkspace,
) -> None:
    async with start_workspace() as one, start_workspace() as two:
        ada = await one.user()
        project = await one.project(ada, "race")
        made: list[str] = []
        for round_ in range(4):
            paths = [f"a{round_}.txt", f"b{round_}.txt"]
            for path in paths:
                await one.stub.CreateFile(
                    W.CreateFileRequest(project=project.id, path=path, content=path),
                    metadata=ada.metadata,
                )
            answers = await asyncio.gather(
                commit(one, ada, project.id, paths[0]), commit(two, ada, project.id, paths[1])
            )
            assert [len(a) for a in answers] == [40, 40], answers  # two shas, no failure
            made += paths

        logged = await subjects(two, ada, project.id)
        assert sorted(logged[: len(made)]) == sorted(made)
        status = await one.stub.GitStatus(
            W.GitStatusRequest(project=project.id), metadata=ada.metadata
        )
        assert (list(status.staged), list(status.untracked)) == ([], [])


async def test_a_commit_taken_back_for_the_quota_takes_no_commit_of_another_replica_with_it(
    start_workspace: StartWorkspace,
) -> None:
    """The undo is relative to HEAD: a commit made on the other replica between a commit and
    its undo would be taken back with it, although the other replica answered it made."""
    quota = {"WORKSPACE_QUOTA_BYTES": str(MB)}
    async with start_workspace(**quota) as one, start_workspace(**quota) as two:
        ada = await one.user()
        project = await one.project(ada, "race")
        tree = one.root / ada.id / "race"
        # Random bytes (git cannot pack them smaller), as a terminal writes them: committed,
        # their objects take the user past the quota.
        (tree / "big.bin").write_bytes(os.urandom(MB // 2 + 100_000))
        made: list[str] = []
        for round_ in range(3):
            path = f"small{round_}.txt"
            await two.stub.CreateFile(
                W.CreateFileRequest(project=project.id, path=path, content=path),
                metadata=ada.metadata,
            )
            refused, small = await asyncio.gather(
                commit(one, ada, project.id, "big.bin"), commit(two, ada, project.id, path)
            )
            assert refused.startswith("RESOURCE_EXHAUSTED: workspace quota exceeded"), refused
            assert len(small) == 40, small
            made.append(path)

        logged = await subjects(one, ada, project.id)
        assert logged[: len(made)] == made[::-1]
        assert "big.bin" not in logged
        status = await one.stub.GitStatus(
            W.GitStatusRequest(project=project.id), metadata=ada.metadata
        )
        assert list(status.untracked) == ["big.bin"]
