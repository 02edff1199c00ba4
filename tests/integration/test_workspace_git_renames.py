"""Git changes and renames of their project through another replica: a git change follows its
project by id, as a file write does (test_workspace_replicas.py). A commit, pull, push, branch
or remote change whose project is renamed between its look-up and its locks runs where the
project is now; a rename asked for while a commit runs waits for it. Before, the change ran at
the project's old path and answered 404 PROJECT_NOT_FOUND, after its commit had landed in the
renamed project when the rename came in its middle.

Two real replicas on one volume and one database, git in real sandboxes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from stockfolio.workspace.v1 import workspace_pb2

from services.workspace.git import GitRunner
from services.workspace.git_values import GitResult
from tests.integration.workspace_harness import (
    StartWorkspace,
    User,
    WorkspaceService,
    git,
    moved_as_a_lock_is_asked,
    rename,
)

W = workspace_pb2
Change = Callable[[], Awaitable[Any]]
Landed = Callable[[Path, Any], None]


def committed_elsewhere(tmp_path: Path, bare: Path) -> str:
    """A commit pushed to `bare` from another clone (someone else's machine); its sha."""
    clone = tmp_path / "elsewhere"
    git(tmp_path, "clone", "--quiet", str(bare), str(clone))
    (clone / "theirs.txt").write_text("theirs\n")
    git(clone, "add", "theirs.txt")
    git(clone, "commit", "--quiet", "-m", "Theirs")
    git(clone, "push", "--quiet", "origin", "main")
    return git(clone, "rev-parse", "HEAD")


async def prepared(
    replica: WorkspaceService,
    ada: User,
    project: W.Project,
    operation: str,
    tmp_path: Path,
) -> tuple[Change, Landed]:
    """What `operation` needs in Ada's project `a` (published to a bare repository of hers),
    made now; the change itself, and what checks that it landed in the project's folder."""
    stub, md, key = replica.stub, ada.metadata, project.id
    folder = replica.root / ada.id / "a"
    bare = await replica.published(ada, project)
    if operation == "commit":
        (folder / "new.txt").write_text("new\n")

        def committed(where: Path, answer: Any) -> None:
            assert git(where, "rev-parse", "HEAD") == answer.commit
            assert git(where, "log", "-1", "--format=%s") == "New"
            assert git(where, "status", "--porcelain") == ""

        request = W.GitCommitRequest(project=key, message="New")
        return lambda: stub.GitCommit(request, metadata=md), committed
    if operation == "pull":
        theirs = committed_elsewhere(tmp_path, bare)

        def pulled(where: Path, answer: Any) -> None:
            assert answer.commit == theirs == git(where, "rev-parse", "HEAD")
            assert (where / "theirs.txt").read_text() == "theirs\n"

        return lambda: stub.GitPull(W.GitPullRequest(project=key), metadata=md), pulled
    if operation == "push":
        (folder / "new.txt").write_text("new\n")
        await stub.GitCommit(W.GitCommitRequest(project=key, message="New"), metadata=md)

        def pushed(where: Path, answer: Any) -> None:
            assert (answer.branch, answer.remote) == ("main", "origin")
            assert git(bare, "rev-parse", "main") == git(where, "rev-parse", "HEAD")

        return lambda: stub.GitPush(W.GitPushRequest(project=key), metadata=md), pushed
    if operation == "create branch":

        def created(where: Path, answer: Any) -> None:
            assert answer.branch.name == "next"
            assert answer.branch.commit == git(where, "rev-parse", "refs/heads/next")

        request_ = W.CreateBranchRequest(project=key, name="next")
        return lambda: stub.CreateBranch(request_, metadata=md), created
    if operation == "switch branch":
        await stub.CreateBranch(W.CreateBranchRequest(project=key, name="next"), metadata=md)

        def switched(where: Path, answer: Any) -> None:
            assert (answer.branch.name, answer.branch.current) == ("next", True)
            assert git(where, "branch", "--show-current") == "next"

        switch = W.SwitchBranchRequest(project=key, name="next")
        return lambda: stub.SwitchBranch(switch, metadata=md), switched
    assert operation == "add remote", operation
    backup = replica.bare_remote(ada, "backup.git").as_uri()

    def added(where: Path, answer: Any) -> None:
        assert (answer.remote.name, answer.remote.url) == ("backup", backup)
        assert git(where, "remote", "get-url", "backup") == backup

    add = W.AddRemoteRequest(project=key, name="backup", url=backup)
    return lambda: stub.AddRemote(add, metadata=md), added


@pytest.mark.parametrize(
    "operation", ["commit", "pull", "push", "create branch", "switch branch", "add remote"]
)
async def test_a_git_change_lands_in_its_project_renamed_as_it_comes_to_its_lock(
    start_workspace: StartWorkspace,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    operation: str,
) -> None:
    """A git change in project a through one replica has looked a up; before it takes its
    lock (the repository's, `git:<folder>`), a is renamed b through the other replica. The
    change lands in b, the project it was meant for."""
    async with start_workspace() as one, start_workspace() as two:
        ada = await one.user()
        project = await one.project(ada, "a")
        user_folder = one.root / ada.id
        change, landed = await prepared(one, ada, project, operation, tmp_path)
        moved_as_a_lock_is_asked(
            monkeypatch,
            lambda key: key == f"git:{user_folder / 'a'}",
            lambda: rename(two, ada, project.id, "b"),
        )
        answer = await change()
        assert sorted(os.listdir(user_folder)) == ["b"]
        landed(user_folder / "b", answer)


async def test_a_rename_asked_for_while_a_commit_runs_waits_for_it(
    start_workspace: StartWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit in project a has made its commit and has still to read it back; a rename of
    a to b is asked for through the other replica then. The rename waits for the commit (a
    second: it takes milliseconds when nothing holds it), which answers its sha, and the
    project then moves with the commit in it. Before, the rename moved the folder at once,
    and the commit, made, answered 404 PROJECT_NOT_FOUND for its next git command."""
    async with start_workspace() as one, start_workspace() as two:
        ada = await one.user()
        project = await one.project(ada, "a")
        user_folder = one.root / ada.id
        (user_folder / "a" / "new.txt").write_text("new\n")
        renaming: list[asyncio.Task[None]] = []
        landed_meanwhile: list[bool] = []
        real_execute = GitRunner._execute

        async def execute(
            self: GitRunner,
            cwd: Path,
            args: Sequence[str],
            config: Sequence[str],
            stdin: bytes | None,
            *,
            transfer: Any = None,
        ) -> GitResult:
            done = await real_execute(self, cwd, args, config, stdin, transfer=transfer)
            if args[0] == "commit" and not renaming:
                renaming.append(asyncio.create_task(rename(two, ada, project.id, "b")))
                await asyncio.wait(renaming, timeout=1.0)
                landed_meanwhile.append(renaming[0].done())
            return done

        monkeypatch.setattr(GitRunner, "_execute", execute)
        committed = await one.stub.GitCommit(
            W.GitCommitRequest(project=project.id, message="New"), metadata=ada.metadata
        )
        await renaming[0]
        assert landed_meanwhile == [False]
        assert sorted(os.listdir(user_folder)) == ["b"]
        assert git(user_folder / "b", "rev-parse", "HEAD") == committed.commit
        assert git(user_folder / "b", "status", "--porcelain") == ""
