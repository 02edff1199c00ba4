"""A user's repository and files against the workspace service, as an attacker would go about
it, beyond test_workspace_isolation.py (a hostile config on disk) and test_workspace_escapes.py
(a project folder swapped for a link, moves and deletes racing a swap): what a pulled tree and
a file:// remote can make git do, a repository pointing at another user's, watches and quota
scans that meet a link, and creates and reads racing a swap.

The real users and workspace services on port 0, git in real sandboxes. A terminal's doings
are plain shell and git commands on the host here (the review ran them in the real sandbox).
SQLite only: the storage engine plays no part."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from stockfolio.workspace.v1 import workspace_pb2

from tests.integration.workspace_harness import (
    StartWorkspace,
    User,
    WorkspaceService,
    git,
    put_decoy,
    shell,
    swapping,
)
from tests.waiting import WAIT

W = workspace_pb2
# The git blob sha of "decoy\n", what an update of a decoy names as the content it replaces.
DECOY_SHA = hashlib.sha1(b"blob 6\0decoy\n").hexdigest()  # noqa: S324 - git's own name


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


async def answered(call: Awaitable[object]) -> str:
    """What a call answered, or the status it was refused with: an attack may be refused in
    more than one way, and only what it reached matters."""
    try:
        return str(await call)
    except grpc.aio.AioRpcError as error:
        return f"{error.code().name}: {error.details()}"


def write_program(path: Path, marker: Path, port: int) -> None:
    """A program that writes `marker` when it runs, and tries the host's loopback at `port` (a
    service of ours)."""
    path.write_text(
        f"#!/bin/sh\necho ran >> {marker}\n"
        f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 2)'"
        f" && echo reached-{port} >> {marker}\n"
    )
    path.chmod(0o755)


def service_port(workspace: WorkspaceService) -> int:
    return int(workspace.address.rsplit(":", 1)[1])


# --- a file:// remote ------------------------------------------------------------------------


async def test_a_pull_cannot_check_its_tree_out_into_the_remotes_folder(
    workspace: WorkspaceService, tmp_path: Path
) -> None:
    """Ada's terminal sets her repository's `core.worktree` to her folder of file:// remotes
    (once, the whole folder of remotes, shared by every user), then pulls a tree holding a
    whole bare repository whose config runs a program (`core.alternateRefsCommand`); she adds
    it as a remote and pushes to it. The pull
    checked the repository out there, and the push ran the program in her sandbox, which had
    the host's network for a file:// remote: it reached the services on loopback. Now a pull
    reads the remotes folder only, and a file:// push or pull has no network."""
    ada, project, folder, remote = await workspace.user_with_published_project("repo")
    roots = workspace.remotes / ada.id
    planted, marker = roots / "evil.git", roots / "ran"
    elsewhere = tmp_path / "elsewhere"
    git(tmp_path, "clone", "--quiet", str(remote), str(elsewhere))
    # A bare repository, its files as a tree: HEAD, refs, alternates (which make receive-pack
    # run `core.alternateRefsCommand`), its config and the program that names.
    inside = elsewhere / "evil.git"
    (inside / "objects" / "info").mkdir(parents=True)
    (inside / "objects" / "info" / "alternates").write_text(f"{remote / 'objects'}\n")
    (inside / "refs" / "tags").mkdir(parents=True)
    (inside / "refs" / "tags" / "keep").write_text("")
    (inside / "HEAD").write_text("ref: refs/heads/main\n")
    write_program(inside / "program.sh", marker, service_port(workspace))
    (inside / "config").write_text(
        f"[core]\n\tbare = true\n\talternateRefsCommand = {planted / 'program.sh'}\n"
    )
    git(elsewhere, "add", "--all")
    git(elsewhere, "commit", "--quiet", "-m", "a repository inside")
    git(elsewhere, "push", "--quiet", "origin", "main")
    git(folder, "config", "core.worktree", str(roots))  # the terminal's doing

    md = ada.metadata
    pulled = await answered(
        workspace.stub.GitPull(W.GitPullRequest(project=project.id, branch="main"), metadata=md)
    )
    assert not planted.exists(), pulled
    await answered(
        workspace.stub.AddRemote(
            W.AddRemoteRequest(project=project.id, name="evil", url=planted.as_uri()), metadata=md
        )
    )
    pushed = await answered(
        workspace.stub.GitPush(
            W.GitPushRequest(project=project.id, remote="evil", branch="main"), metadata=md
        )
    )
    assert not marker.exists(), (marker.read_text(), pushed)
    assert sorted(p.name for p in roots.iterdir()) == ["origin.git"]


async def test_a_hostile_bare_remote_runs_nothing_when_pushed_to_or_pulled_from(
    workspace: WorkspaceService, tmp_path: Path
) -> None:
    """A bare repository in the remotes folder whose config names programs (however it got
    there): git's other end, receive-pack or upload-pack, runs in the pusher's or puller's
    sandbox with that config, and the pusher's project is there, writable."""
    ada, project, folder, remote = await workspace.user_with_published_project("repo")
    roots = workspace.remotes / ada.id
    hostile, marker = roots / "hostile.git", roots / "ran"
    git(tmp_path, "clone", "--quiet", "--bare", str(remote), str(hostile))
    (hostile / "objects" / "info" / "alternates").write_text(f"{remote / 'objects'}\n")
    program = hostile / "program.sh"
    write_program(program, marker, service_port(workspace))
    for key, value in (
        ("core.alternateRefsCommand", str(program)),
        ("core.fsmonitor", str(program)),
        ("core.hooksPath", str(hostile / "hooks")),
        ("uploadpack.packObjectsHook", str(program)),
    ):
        git(hostile, "config", key, value)
    for hook in ("pre-receive", "update", "post-receive", "post-update", "reference-transaction"):
        (hostile / "hooks" / hook).write_text(f"#!/bin/sh\nexec {program}\n")
        (hostile / "hooks" / hook).chmod(0o755)
    md = ada.metadata
    await workspace.stub.AddRemote(
        W.AddRemoteRequest(project=project.id, name="hostile", url=hostile.as_uri()), metadata=md
    )
    (folder / "more.txt").write_text("more\n")
    await workspace.stub.GitCommit(
        W.GitCommitRequest(project=project.id, message="more"), metadata=md
    )
    pushed = await answered(
        workspace.stub.GitPush(W.GitPushRequest(project=project.id, remote="hostile"), metadata=md)
    )
    pulled = await answered(
        workspace.stub.GitPull(W.GitPullRequest(project=project.id, remote="hostile"), metadata=md)
    )
    assert not marker.exists(), (marker.read_text(), pushed, pulled)
    # The transfer itself worked: nothing was refused to get there.
    assert git(hostile, "rev-parse", "main") == git(folder, "rev-parse", "HEAD"), pushed


# --- scans of a project: watches and the quota ------------------------------------------------


@dataclass
class Watch:
    """A watch being read: the path of every change it reported, in order, and its reader,
    done once the watch has ended."""

    paths: list[str]
    reader: asyncio.Task[None]

    async def until(self, done: Callable[[], bool], what: str) -> None:
        deadline = asyncio.get_running_loop().time() + WAIT
        while not done():
            assert asyncio.get_running_loop().time() < deadline, (what, self.paths[-20:])
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def watched(workspace: WorkspaceService, who: User, project: str) -> AsyncIterator[Watch]:
    call = workspace.stub.WatchFiles(W.WatchFilesRequest(project=project), metadata=who.metadata)
    paths: list[str] = []

    async def read() -> None:
        async for change in call:
            paths.append(change.path)

    watch = Watch(paths, asyncio.create_task(read()))
    await call.initial_metadata()  # the first scan is taken
    try:
        yield watch
    finally:
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await watch.reader


async def bobs_diary(workspace: WorkspaceService) -> tuple[User, Path]:
    """Bob, and his project holding a diary (README.md and .gitignore from its template too)."""
    bob, _, folder = await workspace.user_with_project("private")
    (folder / "diary.txt").write_text("bob's secret\n")
    return bob, folder


async def test_a_watched_project_swapped_for_a_link_reports_nothing_outside_it(
    workspace: WorkspaceService,
) -> None:
    """The watch scanned the project's path at every interval, following it: swapped for a link
    to the workspace root (or to `/`), it reported every user's folders and files, Bob's diary
    included, by name, size and time. Now the watch ends, as for a project deleted."""
    eve, project, folder = await workspace.user_with_project("p")
    await bobs_diary(workspace)
    async with watched(workspace, eve, project.id) as watch:
        (folder / "new.txt").write_text("new\n")
        await watch.until(lambda: "new.txt" in watch.paths, "the watch to report new.txt")
        await shell(folder.parent, "mv p p.real && ln -s .. p")  # the terminal's doing
        await watch.until(watch.reader.done, "the watch to end")
    assert watch.paths == ["new.txt"]


async def test_a_watch_racing_a_folder_swapped_for_a_link_reports_nothing_outside(
    workspace: WorkspaceService,
) -> None:
    """A folder `a` inside the project swapped back and forth with `b`, a link to Bob's project:
    a scan that saw `a` as a folder listed what was there a moment later, Bob's files."""
    eve, project, folder = await workspace.user_with_project("p")
    bob, _ = await bobs_diary(workspace)
    await shell(folder, f"mkdir a && echo decoy > a/decoy.txt && ln -s ../../{bob.id}/private b")
    async with watched(workspace, eve, project.id) as watch, swapping(folder):
        # Each scan that catches a swap reports `a` and `b` changing kind: 100 such reports.
        await watch.until(lambda: len(watch.paths) >= 100, "the watch to see many swaps")
    inside = {"a", "b", "a/decoy.txt", "b/decoy.txt"}
    assert set(watch.paths) <= inside, sorted(set(watch.paths) - inside)


async def test_a_quota_scan_racing_a_folder_swapped_for_a_link_counts_nothing_outside(
    start_workspace: StartWorkspace,
) -> None:
    """The quota's scan walked the user's folder the same way: racing the swap, it counted
    what lay behind the link (Bob's project here, or the host's whole `/`), refused the user's
    own writes for it, and told how much it found (`usedBytes`)."""
    async with start_workspace(WORKSPACE_QUOTA_BYTES=str(2 << 20)) as workspace:
        eve, project, folder = await workspace.user_with_project("p")
        bob, bobs = await bobs_diary(workspace)
        (bobs / "big.bin").write_bytes(b"\0" * (3 << 20))
        await shell(
            folder, f"mkdir a && echo decoy > a/decoy.txt && ln -s ../../{bob.id}/private b"
        )
        refused: list[str] = []
        md = eve.metadata
        async with swapping(folder):
            for _ in range(100):
                # A delete makes the next write's check measure the folder again.
                try:
                    await workspace.stub.CreateFile(
                        W.CreateFileRequest(project=project.id, path="n.txt", content="x"),
                        metadata=md,
                    )
                except grpc.aio.AioRpcError as error:
                    refused.append(f"{error.code().name}: {error.details()}")
                else:
                    await workspace.stub.DeleteFile(
                        W.DeleteFileRequest(project=project.id, path="n.txt"), metadata=md
                    )
        assert refused == [], refused[:3]


# --- git's answers ---------------------------------------------------------------------------


async def test_a_diff_larger_than_any_answer_is_refused_before_it_fills_the_services_memory(
    workspace: WorkspaceService,
) -> None:
    """Git's output was read whole into the service, outside every limit of the sandbox: a
    100 MB file changed line by line took 420 MB of the service for a 200 MB diff that gRPC then
    refused to send (RESOURCE_EXHAUSTED); the terminal writes files of up to 1 GiB, as many as
    the disk holds. Now git is stopped at 32 MiB, no answer being larger, and the call says so.
    A 20 MB file here: its diff is twice that."""
    ada, project, folder = await workspace.user_with_project("p")
    line = b"x" * 99 + b"\n"
    (folder / "big.txt").write_bytes(line * 200_000)
    git(folder, "add", "big.txt")
    git(folder, "commit", "--quiet", "-m", "big")
    (folder / "big.txt").write_bytes(line.replace(b"x", b"y") * 200_000)
    (folder / "small.txt").write_text("small\n")
    git(folder, "add", "small.txt")
    md = ada.metadata
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await workspace.stub.GitDiff(W.GitDiffRequest(project=project.id), metadata=md)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "more than 32 MiB" in (refused.value.details() or "")
    # A diff of less is answered as before.
    small = await workspace.stub.GitDiff(
        W.GitDiffRequest(project=project.id, staged=True), metadata=md
    )
    assert "+small" in small.diff


# --- what a pulled tree holds ------------------------------------------------------------------


async def test_a_pulled_tree_plants_no_link_and_starts_no_submodule(
    workspace: WorkspaceService, tmp_path: Path
) -> None:
    """Someone else pushes links (to `/`, to Bob's project, to `.git`) and submodules whose URL
    is a program (`ext::`) or whose update is a command; Ada pulls, reads through the links and
    uses every git route. Then a `.GIT/config` (crafted with mktree: git refuses to add it)."""
    bob, bobs = await bobs_diary(workspace)
    ada, project, folder, remote = await workspace.user_with_published_project("p")
    marker = tmp_path / "ran"
    elsewhere = tmp_path / "elsewhere"
    git(tmp_path, "clone", "--quiet", str(remote), str(elsewhere))
    links = {"root": "/", "bobs": f"../../{bob.id}/private", "gitdir": ".git"}
    for name, target in links.items():
        (elsewhere / name).symlink_to(target)
    git(tmp_path, "init", "--quiet", str(elsewhere / "sub"))
    git(elsewhere / "sub", "commit", "--quiet", "--allow-empty", "-m", "sub")
    (elsewhere / ".gitmodules").write_text(
        f'[submodule "sub"]\n\tpath = sub\n\turl = ext::sh -c touch% {marker}\n'
        f'[submodule "other"]\n\tpath = other\n\turl = {remote.as_uri()}\n'
        f"\tupdate = !touch {marker}\n"
    )
    git(elsewhere, "add", "--all")
    git(elsewhere, "commit", "--quiet", "-m", "links and submodules")
    git(elsewhere, "push", "--quiet", "origin", "main")

    md = ada.metadata
    answers = [
        await answered(workspace.stub.GitPull(W.GitPullRequest(project=project.id), metadata=md))
    ]
    assert "fast-forwarded" in answers[0], answers
    for path in ("root/etc/passwd", "bobs/diary.txt", "gitdir/config"):
        answers.append(
            await answered(
                workspace.stub.GetFile(W.GetFileRequest(project=project.id, path=path), metadata=md)
            )
        )
    (folder / "changed.txt").write_text("changed\n")
    stub, key = workspace.stub, project.id
    answers += [  # one after the other: a call starts as soon as it is made
        await answered(stub.GitStatus(W.GitStatusRequest(project=key), metadata=md)),
        await answered(stub.GitDiff(W.GitDiffRequest(project=key), metadata=md)),
        await answered(stub.GitCommit(W.GitCommitRequest(project=key, message="m"), metadata=md)),
        await answered(stub.GitPush(W.GitPushRequest(project=key, branch="main"), metadata=md)),
    ]
    assert not marker.exists(), answers
    assert all("bob's secret" not in a and "root:x:0" not in a for a in answers), answers
    # The links arrived as small files holding their targets; the submodule as an empty folder.
    assert {n: (folder / n).read_text() for n in links if not (folder / n).is_symlink()} == links
    assert list((folder / "sub").iterdir()) == []

    before = (folder / ".git" / "config").read_text()
    # On top of what Ada pushed (git fetch, not pull: the .gitmodules stops a merge here too).
    git(elsewhere, "-c", "fetch.recurseSubmodules=false", "fetch", "--quiet", "origin")
    config = git(elsewhere, "hash-object", "-w", "--stdin", stdin="[core]\n\thooksPath = x\n")
    dot_git = git(elsewhere, "mktree", stdin=f"100644 blob {config}\tconfig\n")
    listing = git(elsewhere, "ls-tree", "origin/main")
    tree = git(elsewhere, "mktree", stdin=f"{listing}\n040000 tree {dot_git}\t.GIT\n")
    crafted = git(elsewhere, "commit-tree", tree, "-p", "origin/main", "-m", "a .GIT folder")
    git(elsewhere, "push", "--quiet", "origin", f"{crafted}:refs/heads/main")
    # Named: the branch is otherwise read from the status, which git refuses now that the
    # pulled .gitmodules holds a command (`update = !...`).
    refused = await answered(
        workspace.stub.GitPull(W.GitPullRequest(project=project.id, branch="main"), metadata=md)
    )
    assert "invalid path '.GIT/config'" in refused, refused
    assert (folder / ".git" / "config").read_text() == before
    assert not (folder / ".GIT").exists()
    assert (bobs / "diary.txt").read_text() == "bob's secret\n"


async def test_a_repository_pointing_at_another_users_shows_nothing_of_it(
    workspace: WorkspaceService,
) -> None:
    """Ada's terminal points her repository at Bob's, each way git allows: `.git` as a file
    naming his, `core.worktree`, `objects/info/alternates` with a branch at his commit, and
    `commondir`. Git runs in Ada's sandbox, where Bob's folder does not exist."""
    _, bobs = await bobs_diary(workspace)
    git(bobs, "add", "--all")
    git(bobs, "commit", "--quiet", "-m", "bob's private commit")
    bobs_head = git(bobs, "rev-parse", "HEAD")
    answers: list[str] = []
    for way in ("gitfile", "worktree", "alternates", "commondir"):
        ada, project, folder = await workspace.user_with_project(way)
        if way == "gitfile":
            await shell(folder, f"rm -rf .git && echo 'gitdir: {bobs}/.git' > .git")
        elif way == "worktree":
            git(folder, "config", "core.worktree", str(bobs))
        elif way == "alternates":
            (folder / ".git" / "objects" / "info" / "alternates").write_text(
                f"{bobs}/.git/objects\n"
            )
            (folder / ".git" / "refs" / "heads" / "bobs").write_text(f"{bobs_head}\n")
        else:
            (folder / ".git" / "commondir").write_text(f"{bobs}/.git\n")
        md, key = ada.metadata, project.id
        stub = workspace.stub
        answers += [  # one after the other: a call starts as soon as it is made
            await answered(stub.GitStatus(W.GitStatusRequest(project=key), metadata=md)),
            await answered(stub.GitLog(W.GitLogRequest(project=key), metadata=md)),
            await answered(stub.GitDiff(W.GitDiffRequest(project=key), metadata=md)),
            await answered(stub.ListBranches(W.ListBranchesRequest(project=key), metadata=md)),
            await answered(
                stub.SwitchBranch(W.SwitchBranchRequest(project=key, name="bobs"), metadata=md)
            ),
            await answered(
                stub.GitCommit(W.GitCommitRequest(project=key, message="m"), metadata=md)
            ),
        ]
        assert not (folder / "diary.txt").exists(), way
    shown = "\n".join(answers)
    assert "diary.txt" not in shown and "bob's private commit" not in shown, shown
    assert git(bobs, "rev-parse", "HEAD") == bobs_head
    assert git(bobs, "status", "--porcelain") == ""


# --- writes and reads racing a swap ------------------------------------------------------------


async def test_writes_and_reads_racing_a_folder_swapped_for_a_link_stay_in_the_project(
    workspace: WorkspaceService,
) -> None:
    """test_workspace_escapes.py races moves and deletes against the swap; here creates,
    uploads, updates and reads of `a/...` while `a` and `b` (a link to Bob's project) trade
    places: nothing lands in Bob's project, and no read answers his diary."""
    eve, project, folder = await workspace.user_with_project("p")
    bob, bobs = await bobs_diary(workspace)
    await shell(folder, f"mkdir a && ln -s ../../{bob.id}/private b")
    before = sorted(p.name for p in bobs.iterdir())
    stub, md, key = workspace.stub, eve.metadata, project.id
    read: list[str] = []
    updated = 0
    async with swapping(folder):
        # Until some reads and updates met the real folder (the race was run), within bounds.
        for attempt in range(600):
            if attempt >= 100 and updated and any("decoy" in answer for answer in read):
                break
            put_decoy(folder)
            path = f"a/c{attempt}.txt"
            create = W.CreateFileRequest(project=key, path=path, content="decoy\n")
            await answered(stub.CreateFile(create, metadata=md))
            update = W.UpdateFileRequest(project=key, path=path, content="eve", sha=DECOY_SHA)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stub.UpdateFile(update, metadata=md)
                updated += 1
            upload = W.UploadFileRequest(project=key, path=f"a/u{attempt}.txt")
            await answered(stub.UploadFile(iter([upload]), metadata=md))
            diary = W.GetFileRequest(project=key, path="a/diary.txt")
            read.append(await answered(stub.GetFile(diary, metadata=md)))
    assert sorted(p.name for p in bobs.iterdir()) == before
    assert (bobs / "diary.txt").read_text() == "bob's secret\n"
    assert not any("bob's secret" in answer for answer in read)
    assert any("decoy" in answer for answer in read)  # the race was run: reads landed,
    assert updated > 0  # and updates
