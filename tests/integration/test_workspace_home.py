"""The user's default project, `home`, through the real workspace service on SQLite and
PostgreSQL: every file and git call naming no project acts on it; it is made on first use (by
any call, once, even when first calls race, on one replica or two) as a repository with no files
and a first commit by its owner; a project already named home is it; a deleted home comes back
empty; making it counts against the quota; ResolveProject keeps its own no-project meaning."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from google.api import httpbody_pb2
from stockfolio.workspace.v1 import workspace_pb2

from services.workspace.quota import measure
from tests.integration.workspace_harness import (
    StartWorkspace,
    User,
    WorkspaceService,
    git,
)
from tests.rpc_errors import expect_error, reason

W = workspace_pb2


async def project_names(workspace: WorkspaceService, who: User) -> list[str]:
    listed = await workspace.stub.ListProjects(W.ListProjectsRequest(), metadata=who.metadata)
    return [p.name for p in listed.projects]


async def home_of(workspace: WorkspaceService, who: User) -> W.Project:
    listed = await workspace.stub.ListProjects(W.ListProjectsRequest(), metadata=who.metadata)
    homes: list[W.Project] = [p for p in listed.projects if p.name == "home"]
    assert len(homes) == 1, listed
    return homes[0]


async def test_a_new_users_first_listing_makes_an_empty_home_repository_and_lists_nothing(
    workspace: WorkspaceService,
) -> None:
    ada = await workspace.user("Ada Lovelace")
    assert await project_names(workspace, ada) == []

    listed = await workspace.stub.ListFiles(W.ListFilesRequest(), metadata=ada.metadata)

    assert list(listed.entries) == []
    assert listed.pagination.total == 0
    home = await home_of(workspace, ada)
    assert (home.name, home.template) == ("home", "home")
    folder = workspace.root / ada.id / "home"
    assert [p.name for p in folder.iterdir()] == [".git"]
    assert git(folder, "log", "--format=%an <%ae>|%s") == (
        f"Ada Lovelace <{ada.email}>|Start the home project"
    )
    assert git(folder, "branch", "--show-current") == "main"


async def test_files_written_read_moved_and_deleted_without_a_project_live_in_home(
    workspace: WorkspaceService,
) -> None:
    ada = await workspace.user()
    folder = workspace.root / ada.id / "home"

    created = await workspace.stub.CreateFile(
        W.CreateFileRequest(path="notes/todo.md", content="one\n"), metadata=ada.metadata
    )
    home = await home_of(workspace, ada)
    assert (created.file.project, created.file.path) == (home.id, "notes/todo.md")
    assert (folder / "notes" / "todo.md").read_text() == "one\n"

    read = await workspace.stub.GetFile(
        W.GetFileRequest(path="notes/todo.md"), metadata=ada.metadata
    )
    assert (read.file.content, read.file.project) == ("one\n", home.id)

    updated = await workspace.stub.UpdateFile(
        W.UpdateFileRequest(path="notes/todo.md", content="two\n", sha=read.file.sha),
        metadata=ada.metadata,
    )
    assert updated.file.sha != read.file.sha
    assert (folder / "notes" / "todo.md").read_text() == "two\n"

    moved = await workspace.stub.MoveFile(
        W.MoveFileRequest(path="notes/todo.md", new_path="todo.md"), metadata=ada.metadata
    )
    assert moved.entry.path == "todo.md"
    listed = await workspace.stub.ListFiles(W.ListFilesRequest(), metadata=ada.metadata)
    assert sorted(e.path for e in listed.entries) == ["notes", "todo.md"]

    uploaded = await workspace.stub.UploadFile(
        iter([W.UploadFileRequest(path="blob.bin", body=httpbody_pb2.HttpBody(data=b"\x00\xff"))]),
        metadata=ada.metadata,
    )
    assert (uploaded.file.project, uploaded.file.size) == (home.id, 2)
    downloaded = [
        c.data
        async for c in workspace.stub.DownloadFile(
            W.DownloadFileRequest(path="blob.bin"), metadata=ada.metadata
        )
    ]
    assert b"".join(downloaded) == b"\x00\xff"

    await workspace.stub.DeleteFile(W.DeleteFileRequest(path="todo.md"), metadata=ada.metadata)
    assert not (folder / "todo.md").exists()
    assert await project_names(workspace, ada) == ["home"]


async def test_git_without_a_project_works_on_home(workspace: WorkspaceService) -> None:
    ada = await workspace.user("Ada Lovelace")
    plan = await workspace.stub.CreateFile(
        W.CreateFileRequest(path="plan.md", content="# Plan\n"), metadata=ada.metadata
    )

    status = await workspace.stub.GitStatus(W.GitStatusRequest(), metadata=ada.metadata)
    assert (status.branch, list(status.untracked), list(status.staged)) == ("main", ["plan.md"], [])
    committed = await workspace.stub.GitCommit(
        W.GitCommitRequest(message="Add the plan"), metadata=ada.metadata
    )
    log = await workspace.stub.GitLog(W.GitLogRequest(), metadata=ada.metadata)
    assert [(c.sha, c.subject) for c in log.commits][:1] == [(committed.commit, "Add the plan")]
    assert [c.subject for c in log.commits][1:] == ["Start the home project"]

    await workspace.stub.UpdateFile(
        W.UpdateFileRequest(path="plan.md", content="# Plan\nship\n", sha=plan.file.sha),
        metadata=ada.metadata,
    )
    diff = await workspace.stub.GitDiff(W.GitDiffRequest(), metadata=ada.metadata)
    assert "+ship" in diff.diff

    await workspace.stub.CreateBranch(W.CreateBranchRequest(name="draft"), metadata=ada.metadata)
    switched = await workspace.stub.SwitchBranch(
        W.SwitchBranchRequest(name="draft"), metadata=ada.metadata
    )
    assert (switched.branch.name, switched.branch.current) == ("draft", True)
    branches = await workspace.stub.ListBranches(W.ListBranchesRequest(), metadata=ada.metadata)
    assert sorted(b.name for b in branches.branches) == ["draft", "main"]

    remote = workspace.bare_remote(ada, "home.git")
    await workspace.stub.AddRemote(
        W.AddRemoteRequest(name="origin", url=remote.as_uri()), metadata=ada.metadata
    )
    remotes = await workspace.stub.ListRemotes(W.ListRemotesRequest(), metadata=ada.metadata)
    assert [(r.name, r.url) for r in remotes.remotes] == [("origin", remote.as_uri())]
    pushed = await workspace.stub.GitPush(W.GitPushRequest(), metadata=ada.metadata)
    assert (pushed.branch, pushed.remote) == ("draft", "origin")
    assert git(remote, "rev-parse", "draft") == committed.commit
    pulled = await workspace.stub.GitPull(W.GitPullRequest(), metadata=ada.metadata)
    assert (pulled.summary, pulled.commit) == ("already up to date", committed.commit)
    assert await project_names(workspace, ada) == ["home"]


async def test_watching_without_a_project_reports_changes_in_home(
    workspace: WorkspaceService,
) -> None:
    ada = await workspace.user()
    stream = workspace.stub.WatchFiles(W.WatchFilesRequest(), metadata=ada.metadata)
    await stream.initial_metadata()  # home exists and its first scan is taken
    await workspace.stub.CreateFile(
        W.CreateFileRequest(path="seen.txt", content="hi\n"), metadata=ada.metadata
    )
    event = await asyncio.wait_for(stream.read(), 10)
    assert (event.kind, event.path) == (W.CHANGE_KIND_CREATED, "seen.txt")
    stream.cancel()
    assert await project_names(workspace, ada) == ["home"]


FirstCall = Callable[[WorkspaceService, User], Awaitable[object]]
READ_ONLY_FIRST_CALLS: dict[str, FirstCall] = {
    "ListFiles": lambda w, u: w.stub.ListFiles(W.ListFilesRequest(), metadata=u.metadata),
    "GitStatus": lambda w, u: w.stub.GitStatus(W.GitStatusRequest(), metadata=u.metadata),
    "GitLog": lambda w, u: w.stub.GitLog(W.GitLogRequest(), metadata=u.metadata),
    "GitDiff": lambda w, u: w.stub.GitDiff(W.GitDiffRequest(), metadata=u.metadata),
    "ListBranches": lambda w, u: w.stub.ListBranches(W.ListBranchesRequest(), metadata=u.metadata),
    "ListRemotes": lambda w, u: w.stub.ListRemotes(W.ListRemotesRequest(), metadata=u.metadata),
}


@pytest.mark.parametrize("call", READ_ONLY_FIRST_CALLS, ids=list(READ_ONLY_FIRST_CALLS))
async def test_any_call_naming_no_project_may_be_the_first_and_makes_home(
    workspace: WorkspaceService, call: str
) -> None:
    ada = await workspace.user()
    await READ_ONLY_FIRST_CALLS[call](workspace, ada)
    assert await project_names(workspace, ada) == ["home"]


async def test_a_missing_file_in_home_is_a_missing_file_not_a_missing_project(
    workspace: WorkspaceService,
) -> None:
    ada = await workspace.user()
    error = await expect_error(
        workspace.stub.GetFile(W.GetFileRequest(path="nope.txt"), metadata=ada.metadata),
        grpc.StatusCode.NOT_FOUND,
    )
    assert reason(error) == "FILE_NOT_FOUND"
    assert await project_names(workspace, ada) == ["home"]


async def test_first_calls_at_once_all_succeed_and_make_exactly_one_home(
    workspace: WorkspaceService,
) -> None:
    ada = await workspace.user()
    writes = [
        workspace.stub.CreateFile(
            W.CreateFileRequest(path=f"f{n}.txt", content=f"{n}\n"), metadata=ada.metadata
        )
        for n in range(4)
    ]
    reads = [
        workspace.stub.ListFiles(W.ListFilesRequest(), metadata=ada.metadata),
        workspace.stub.GitStatus(W.GitStatusRequest(), metadata=ada.metadata),
    ]
    created = await asyncio.gather(*writes)
    await asyncio.gather(*reads)

    home = await home_of(workspace, ada)
    assert {c.file.project for c in created} == {home.id}
    assert await project_names(workspace, ada) == ["home"]
    folder = workspace.root / ada.id / "home"
    assert sorted(p.name for p in folder.iterdir()) == [
        ".git",
        "f0.txt",
        "f1.txt",
        "f2.txt",
        "f3.txt",
    ]
    assert git(folder, "log", "--format=%s") == "Start the home project"
    assert sorted(p.name for p in (workspace.root / ada.id).iterdir()) == ["home"]


async def test_first_calls_racing_on_two_replicas_make_exactly_one_home(
    start_workspace: StartWorkspace,
) -> None:
    """Two servers on one database and root: the index decides, the loser uses the winner's."""
    async with start_workspace() as first, start_workspace() as second:
        ada = await first.user()
        replies = await asyncio.gather(
            *(
                replica.stub.CreateFile(
                    W.CreateFileRequest(path=f"{name}.txt", content=name), metadata=ada.metadata
                )
                for replica, name in ((first, "a"), (second, "b"), (first, "c"), (second, "d"))
            )
        )
        home = await home_of(first, ada)
        assert {r.file.project for r in replies} == {home.id}
        assert await project_names(second, ada) == ["home"]
        folder = first.root / ada.id / "home"
        assert sorted(p.name for p in folder.iterdir()) == [
            ".git", "a.txt", "b.txt", "c.txt", "d.txt"
        ]  # fmt: skip


async def test_a_project_already_named_home_is_the_default(workspace: WorkspaceService) -> None:
    ada = await workspace.user()
    mine = await workspace.project(ada, "home", "notes")

    listed = await workspace.stub.ListFiles(W.ListFilesRequest(), metadata=ada.metadata)
    created = await workspace.stub.CreateFile(
        W.CreateFileRequest(path="notes/second.md", content="2\n"), metadata=ada.metadata
    )

    assert sorted(e.path for e in listed.entries) == [".gitignore", "README.md", "notes"]
    assert created.file.project == mine.id
    assert (await home_of(workspace, ada)).template == "notes"


async def test_a_deleted_home_comes_back_empty_on_next_use(workspace: WorkspaceService) -> None:
    ada = await workspace.user()
    await workspace.stub.CreateFile(
        W.CreateFileRequest(path="old.txt", content="old\n"), metadata=ada.metadata
    )
    first = await home_of(workspace, ada)
    await workspace.stub.DeleteProject(W.DeleteProjectRequest(id=first.id), metadata=ada.metadata)
    assert await project_names(workspace, ada) == []

    listed = await workspace.stub.ListFiles(W.ListFilesRequest(), metadata=ada.metadata)

    assert list(listed.entries) == []
    again = await home_of(workspace, ada)
    assert again.id != first.id
    assert not (workspace.root / ada.id / "home" / "old.txt").exists()


async def test_a_renamed_home_is_an_ordinary_project_and_a_new_home_is_made(
    workspace: WorkspaceService,
) -> None:
    ada = await workspace.user()
    await workspace.stub.CreateFile(
        W.CreateFileRequest(path="kept.txt", content="kept\n"), metadata=ada.metadata
    )
    first = await home_of(workspace, ada)
    await workspace.stub.RenameProject(
        W.RenameProjectRequest(id=first.id, name="archive"), metadata=ada.metadata
    )

    listed = await workspace.stub.ListFiles(W.ListFilesRequest(), metadata=ada.metadata)

    assert list(listed.entries) == []
    assert await project_names(workspace, ada) == ["archive", "home"]
    kept = await workspace.stub.GetFile(
        W.GetFileRequest(project="archive", path="kept.txt"), metadata=ada.metadata
    )
    assert kept.file.content == "kept\n"


async def test_a_folder_named_home_that_is_no_project_is_reported_not_taken_over(
    workspace: WorkspaceService,
) -> None:
    ada = await workspace.user()
    stray = workspace.root / ada.id / "home"
    stray.mkdir(parents=True)  # as a terminal at the user's root could
    (stray / "mine.txt").write_text("mine\n")

    error = await expect_error(
        workspace.stub.ListFiles(W.ListFilesRequest(), metadata=ada.metadata),
        grpc.StatusCode.ALREADY_EXISTS,
    )

    assert reason(error) == "PROJECT_EXISTS"
    assert "home" in (error.details() or "")
    assert (stray / "mine.txt").read_text() == "mine\n"
    assert await project_names(workspace, ada) == []


async def test_resolve_project_without_one_still_names_the_users_root(
    workspace: WorkspaceService,
) -> None:
    """The terminal's no-project meaning is unchanged: a shell opens at the user's root, where
    home is one folder among the projects."""
    ada = await workspace.user()
    await workspace.stub.ListFiles(W.ListFilesRequest(), metadata=ada.metadata)
    root = await workspace.stub.ResolveProject(W.ResolveProjectRequest(), metadata=ada.metadata)
    assert (root.project_id, root.directory) == ("", ada.id)
    home = await workspace.stub.ResolveProject(
        W.ResolveProjectRequest(project_id="home"), metadata=ada.metadata
    )
    assert home.directory == f"{ada.id}/home"


@pytest.fixture
async def tight_workspace(start_workspace: StartWorkspace) -> AsyncIterator[WorkspaceService]:
    async with start_workspace(WORKSPACE_QUOTA_FILES="10") as service:
        yield service


async def test_making_home_counts_against_the_quota_like_any_project(
    tight_workspace: WorkspaceService,
) -> None:
    ada = await tight_workspace.user()
    error = await expect_error(
        tight_workspace.stub.CreateFile(
            W.CreateFileRequest(path="a.txt", content="a"), metadata=ada.metadata
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason(error) == "QUOTA_EXCEEDED"
    assert await project_names(tight_workspace, ada) == []
    assert measure(tight_workspace.root / ada.id).files == 0
