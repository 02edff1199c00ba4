"""Git on projects through the real workspace service, with a real local bare repository as the
remote: status, commits by the user's profile, log, diff, branches, remotes, push (then clone
elsewhere and find the commit), pull of a commit made there, and a diverged pull that reports a
conflict and changes nothing. SQLite only: the storage engine plays no part here."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from stockfolio.workspace.v1 import workspace_pb2

from tests.integration.workspace_harness import (
    WorkspaceService,
    git,
)
from tests.rpc_errors import expect_error, fields, reason

W = workspace_pb2


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


async def test_status_reports_staged_unstaged_and_untracked_files(
    workspace: WorkspaceService,
) -> None:
    ada, project, folder = await workspace.user_with_project("repo")
    (folder / "README.md").write_text("changed\n")
    (folder / "new.txt").write_text("new\n")
    (folder / "staged.txt").write_text("staged\n")
    git(folder, "add", "staged.txt")

    status = await workspace.stub.GitStatus(
        W.GitStatusRequest(project=project.id), metadata=ada.metadata
    )
    assert (status.branch, status.ahead, status.behind, status.upstream) == ("main", 0, 0, "")
    assert (list(status.staged), list(status.unstaged), list(status.untracked)) == (
        ["staged.txt"],
        ["README.md"],
        ["new.txt"],
    )
    assert status.commit == git(folder, "rev-parse", "HEAD")


async def test_a_commit_is_by_the_users_profile_and_shows_in_log_and_diff(
    workspace: WorkspaceService,
) -> None:
    ada, project, folder = await workspace.user_with_project("repo")
    (folder / "README.md").write_text("# repo\n\nmore\n")
    diff = await workspace.stub.GitDiff(W.GitDiffRequest(project=project.id), metadata=ada.metadata)
    assert "+more" in diff.diff and "README.md" in diff.diff

    reply = await workspace.stub.GitCommit(
        W.GitCommitRequest(project=project.id, message="Say more"), metadata=ada.metadata
    )
    assert (reply.author_name, reply.author_email) == ("Ada Lovelace", ada.email)
    assert reply.commit == git(folder, "rev-parse", "HEAD")
    assert (
        git(folder, "log", "-1", "--format=%an <%ae>|%s") == f"Ada Lovelace <{ada.email}>|Say more"
    )

    log = await workspace.stub.GitLog(W.GitLogRequest(project=project.id), metadata=ada.metadata)
    assert [(c.sha, c.subject) for c in log.commits] == [
        (reply.commit, "Say more"),
        (log.commits[1].sha, "Start from the empty template"),
    ]
    assert log.commits[0].author_email == ada.email

    nothing = await expect_error(
        workspace.stub.GitCommit(
            W.GitCommitRequest(project=project.id, message="again"), metadata=ada.metadata
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason(nothing) == "GIT_NOTHING_TO_COMMIT"


async def test_branches_are_created_listed_and_switched(workspace: WorkspaceService) -> None:
    ada, project, folder = await workspace.user_with_project("repo")
    created = await workspace.stub.CreateBranch(
        W.CreateBranchRequest(project=project.id, name="feature/x"), metadata=ada.metadata
    )
    head = git(folder, "rev-parse", "HEAD")
    assert (created.branch.name, created.branch.current, created.branch.commit) == (
        "feature/x",
        False,
        head,
    )
    switched = await workspace.stub.SwitchBranch(
        W.SwitchBranchRequest(project=project.id, name="feature/x"), metadata=ada.metadata
    )
    assert switched.branch.current
    listed = await workspace.stub.ListBranches(
        W.ListBranchesRequest(project=project.id), metadata=ada.metadata
    )
    assert [(b.name, b.current) for b in listed.branches] == [("feature/x", True), ("main", False)]
    bad = await expect_error(
        workspace.stub.CreateBranch(
            W.CreateBranchRequest(project=project.id, name="--force"), metadata=ada.metadata
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields(bad) == ["name"]


async def test_a_branch_that_exists_is_a_conflict_and_one_that_does_not_is_not_found(
    workspace: WorkspaceService,
) -> None:
    ada, project, folder = await workspace.user_with_project("repo")
    await workspace.stub.CreateBranch(
        W.CreateBranchRequest(project=project.id, name="next"), metadata=ada.metadata
    )
    again = await expect_error(
        workspace.stub.CreateBranch(
            W.CreateBranchRequest(project=project.id, name="next"), metadata=ada.metadata
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert (reason(again), again.details()) == ("BRANCH_EXISTS", "branch next already exists")
    missing = await expect_error(
        workspace.stub.SwitchBranch(
            W.SwitchBranchRequest(project=project.id, name="nowhere"), metadata=ada.metadata
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert (reason(missing), missing.details()) == ("BRANCH_NOT_FOUND", "no branch named nowhere")
    # A change on main that the other branch's version of the file would overwrite.
    (folder / "README.md").write_text("on next\n")
    git(folder, "switch", "-q", "next")
    git(folder, "commit", "-qam", "next's readme")
    git(folder, "switch", "-q", "main")
    (folder / "README.md").write_text("unsaved on main\n")
    blocked = await expect_error(
        workspace.stub.SwitchBranch(
            W.SwitchBranchRequest(project=project.id, name="next"), metadata=ada.metadata
        ),
        grpc.StatusCode.ABORTED,
    )
    assert reason(blocked) == "GIT_CONFLICT"
    assert "README.md" in blocked.details()
    assert (folder / "README.md").read_text() == "unsaved on main\n"
    # None of them changed anything: still on main, with the one branch made.
    assert git(folder, "branch", "--show-current") == "main"
    listed = await workspace.stub.ListBranches(
        W.ListBranchesRequest(project=project.id), metadata=ada.metadata
    )
    assert [b.name for b in listed.branches] == ["main", "next"]


@pytest.mark.parametrize(
    "url", ["ext::sh -c touch% /tmp/pwned", "--upload-pack=touch /tmp/x", "file:///etc"]
)
async def test_unsafe_remotes_are_refused(workspace: WorkspaceService, url: str) -> None:
    ada, project, _ = await workspace.user_with_project("repo")
    error = await expect_error(
        workspace.stub.AddRemote(
            W.AddRemoteRequest(project=project.id, name="origin", url=url), metadata=ada.metadata
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields(error) == ["url"]
    remotes = await workspace.stub.ListRemotes(
        W.ListRemotesRequest(project=project.id), metadata=ada.metadata
    )
    assert list(remotes.remotes) == []


async def test_push_clone_elsewhere_commit_there_and_pull_it_back(
    workspace: WorkspaceService, tmp_path: Path
) -> None:
    ada, project, folder = await workspace.user_with_project("repo")
    bare = workspace.bare_remote(ada)
    added = await workspace.stub.AddRemote(
        W.AddRemoteRequest(project=project.id, name="origin", url=bare.as_uri()),
        metadata=ada.metadata,
    )
    assert (added.remote.name, added.remote.url) == ("origin", bare.as_uri())
    listed = await workspace.stub.ListRemotes(
        W.ListRemotesRequest(project=project.id), metadata=ada.metadata
    )
    assert [(r.name, r.url) for r in listed.remotes] == [("origin", bare.as_uri())]

    (folder / "app.py").write_text("print('hi')\n")
    ours = await workspace.stub.GitCommit(
        W.GitCommitRequest(project=project.id, message="Add app"), metadata=ada.metadata
    )
    pushed = await workspace.stub.GitPush(
        W.GitPushRequest(project=project.id), metadata=ada.metadata
    )
    assert (pushed.branch, pushed.remote) == ("main", "origin")

    clone = tmp_path / "elsewhere"
    git(tmp_path, "clone", "--quiet", bare.as_uri(), str(clone))
    assert git(clone, "rev-parse", "HEAD") == ours.commit
    assert (clone / "app.py").read_text() == "print('hi')\n"

    (clone / "theirs.txt").write_text("from elsewhere\n")
    git(clone, "add", "theirs.txt")
    git(clone, "commit", "--quiet", "-m", "Theirs")
    git(clone, "push", "--quiet", "origin", "main")
    theirs = git(clone, "rev-parse", "HEAD")

    status = await workspace.stub.GitStatus(
        W.GitStatusRequest(project=project.id), metadata=ada.metadata
    )
    assert status.upstream == "origin/main"
    pulled = await workspace.stub.GitPull(
        W.GitPullRequest(project=project.id), metadata=ada.metadata
    )
    assert pulled.commit == theirs
    assert pulled.summary == f"fast-forwarded to {theirs[:12]}"
    assert (folder / "theirs.txt").read_text() == "from elsewhere\n"


async def test_a_diverged_pull_reports_a_conflict_and_changes_nothing(
    workspace: WorkspaceService, tmp_path: Path
) -> None:
    ada, project, folder = await workspace.user_with_project("repo")
    bare = await workspace.published(ada, project)
    clone = tmp_path / "elsewhere"
    git(tmp_path, "clone", "--quiet", bare.as_uri(), str(clone))
    (clone / "README.md").write_text("theirs\n")
    git(clone, "commit", "--quiet", "-am", "Theirs")
    git(clone, "push", "--quiet", "origin", "main")

    (folder / "README.md").write_text("ours\n")
    ours = await workspace.stub.GitCommit(
        W.GitCommitRequest(project=project.id, message="Ours"), metadata=ada.metadata
    )
    (folder / "wip.txt").write_text("work in progress\n")

    conflict = await expect_error(
        workspace.stub.GitPull(W.GitPullRequest(project=project.id), metadata=ada.metadata),
        grpc.StatusCode.ABORTED,
    )
    assert reason(conflict) == "GIT_CONFLICT"
    assert (conflict.details() or "").startswith("conflict: ")
    assert git(folder, "rev-parse", "HEAD") == ours.commit
    assert (folder / "README.md").read_text() == "ours\n"
    assert (folder / "wip.txt").read_text() == "work in progress\n"

    rejected = await expect_error(
        workspace.stub.GitPush(W.GitPushRequest(project=project.id), metadata=ada.metadata),
        grpc.StatusCode.ABORTED,
    )
    assert reason(rejected) == "GIT_CONFLICT"
    # git's own report (stdout) named the remote by its host path: scrubbed like stderr.
    assert str(tmp_path) not in (rejected.details() or "")
    assert "file://<remotes>/" in (rejected.details() or "")
    assert git(clone, "rev-parse", "HEAD") == git(bare, "rev-parse", "main")
