"""A hostile repository cannot make the workspace service run anything on the host.

A user's terminal can write any file in their projects, `.git/config` and `.gitattributes`
included. Each case below writes such a config directly on disk, then drives every git route
through the real workspace service (and the issue's own attack through the real facade); a
program named by the config would write a marker file on the host by its absolute path, and the
marker must never appear. SQLite only: the storage engine plays no part here."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from stockfolio.workspace.v1 import workspace_pb2

from tests.integration.workspace_harness import (
    Client,
    User,
    WorkspaceService,
    bearer,
    git,
    shell,
)

W = workspace_pb2
PGP = "-----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----"
SSH = "-----BEGIN SSH SIGNATURE-----\n U1NIU0lH\n -----END SSH SIGNATURE-----"
X509 = "-----BEGIN SIGNED MESSAGE-----\n MIAGCSqG\n -----END SIGNED MESSAGE-----"


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


def sign_head(repo: Path, signature: str) -> None:
    """Replace HEAD by a copy carrying a (fake) signature: showing it runs the verifier."""
    tree = git(repo, "rev-parse", "HEAD^{tree}")
    parent = git(repo, "rev-parse", "HEAD")
    body = (
        f"tree {tree}\nparent {parent}\nauthor Eve <eve@example.com> 1700000000 +0000\n"
        f"committer Eve <eve@example.com> 1700000000 +0000\ngpgsig {signature}\n\nsigned\n"
    )
    sha = git(repo, "hash-object", "-t", "commit", "-w", "--stdin", stdin=body)
    git(repo, "update-ref", "HEAD", sha)


class Hostile:
    """What a case writes into the project: config entries, .gitattributes, extra setup."""

    def __init__(
        self,
        entries: list[tuple[str, str]],
        attributes: str = "",
        prepare: Callable[[Path, Path], None] | None = None,
    ) -> None:
        self.entries = entries
        self.attributes = attributes
        self.prepare = prepare


def with_alternates(repo: Path, remote: Path) -> None:
    (repo / ".git" / "objects" / "info" / "alternates").write_text(f"{remote / 'objects'}\n")


def with_hooks(repo: Path, evil: Path) -> None:
    for hook in ("pre-commit", "post-commit", "pre-push", "post-merge", "post-checkout"):
        (repo / ".git" / "hooks" / hook).write_text(f"#!/bin/sh\nexec {evil} {hook}\n")
        (repo / ".git" / "hooks" / hook).chmod(0o755)


def with_include(repo: Path, evil: Path) -> None:
    (repo / "evil.config").write_text(f"[log]\n\tshowSignature = true\n[gpg]\n\tprogram = {evil}\n")
    sign_head(repo, PGP)


CASES: dict[str, Hostile] = {
    "gpg.program + log.showSignature": Hostile(
        [("log.showSignature", "true"), ("gpg.program", "{evil}")],
        prepare=lambda repo, _: sign_head(repo, PGP),
    ),
    "gpg.openpgp.program": Hostile(
        [("log.showSignature", "true"), ("gpg.openpgp.program", "{evil}")],
        prepare=lambda repo, _: sign_head(repo, PGP),
    ),
    "gpg.ssh.program": Hostile(
        [
            ("log.showSignature", "true"),
            ("gpg.format", "ssh"),
            ("gpg.ssh.program", "{evil}"),
            ("gpg.ssh.allowedSignersFile", "{repo}/README.md"),
        ],
        prepare=lambda repo, _: sign_head(repo, SSH),
    ),
    "gpg.x509.program": Hostile(
        [("log.showSignature", "true"), ("gpg.x509.program", "{evil}")],
        prepare=lambda repo, _: sign_head(repo, X509),
    ),
    "include.path": Hostile([("include.path", "{repo}/evil.config")]),
    "core.fsmonitor": Hostile([("core.fsmonitor", "{evil}")]),
    "core.pager": Hostile([("core.pager", "{evil}"), ("pager.log", "{evil}")]),
    "diff.x.textconv + .gitattributes": Hostile(
        [("diff.x.textconv", "{evil}"), ("diff.x.command", "{evil}")], attributes="* diff=x\n"
    ),
    "merge.x.driver + .gitattributes": Hostile(
        [("merge.x.driver", "{evil} %O %A %B")], attributes="* merge=x\n"
    ),
    "filter.x + .gitattributes": Hostile(
        [
            ("filter.x.clean", "{evil}"),
            ("filter.x.smudge", "{evil}"),
            ("filter.x.process", "{evil}"),
        ],
        attributes="* filter=x\n",
    ),
    "remote.origin.uploadpack": Hostile(
        [("remote.origin.uploadpack", "{evil}"), ("remote.origin.receivepack", "{evil}")]
    ),
    "core.sshCommand": Hostile(
        [("core.sshCommand", "{evil}"), ("url.ssh://git@example.invalid/.insteadOf", "file://")]
    ),
    "url.ext::.insteadOf": Hostile([("url.ext::sh -c touch% {marker}.insteadOf", "file://")]),
    "core.alternateRefsCommand": Hostile(
        [("core.alternateRefsCommand", "{evil}")], prepare=with_alternates
    ),
    "core.hooksPath and hooks": Hostile([("core.hooksPath", "{repo}/.git/hooks")]),
    "core.editor": Hostile([("core.editor", "{evil}"), ("sequence.editor", "{evil}")]),
    "credential.helper": Hostile([("credential.helper", "!{evil}")]),
}


async def every_git_route(workspace: WorkspaceService, who: User, project: str) -> list[str]:
    """Call every git route once; the routes refused are named (a refusal is fine: running
    anything is not)."""
    stub, md = workspace.stub, who.metadata
    backup = workspace.bare_remote(who, "backup.git")
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "status": lambda: stub.GitStatus(W.GitStatusRequest(project=project), metadata=md),
        "log": lambda: stub.GitLog(W.GitLogRequest(project=project), metadata=md),
        "diff": lambda: stub.GitDiff(W.GitDiffRequest(project=project), metadata=md),
        "diff staged": lambda: stub.GitDiff(
            W.GitDiffRequest(project=project, staged=True), metadata=md
        ),
        "branches": lambda: stub.ListBranches(W.ListBranchesRequest(project=project), metadata=md),
        "remotes": lambda: stub.ListRemotes(W.ListRemotesRequest(project=project), metadata=md),
        "create branch": lambda: stub.CreateBranch(
            W.CreateBranchRequest(project=project, name="topic"), metadata=md
        ),
        "switch": lambda: stub.SwitchBranch(
            W.SwitchBranchRequest(project=project, name="main"), metadata=md
        ),
        "commit": lambda: stub.GitCommit(
            W.GitCommitRequest(project=project, message="change"), metadata=md
        ),
        "pull": lambda: stub.GitPull(W.GitPullRequest(project=project), metadata=md),
        "push": lambda: stub.GitPush(W.GitPushRequest(project=project), metadata=md),
        "add remote": lambda: stub.AddRemote(
            W.AddRemoteRequest(project=project, name="backup", url=backup.as_uri()), metadata=md
        ),
    }
    refused = []
    for name, call in calls.items():
        try:
            await call()
        except grpc.aio.AioRpcError:
            refused.append(name)
    return refused


async def hostile_project(
    workspace: WorkspaceService, tmp_path: Path
) -> tuple[User, W.Project, Path, Path]:
    """A project pushed to a bare remote that has moved on since (a pull has work to do)."""
    ada = await workspace.user()
    project = await workspace.project(ada, "repo")
    repo = workspace.root / ada.id / "repo"
    remote = await workspace.published(ada, project)
    elsewhere = tmp_path / "elsewhere"
    git(tmp_path, "clone", "--quiet", str(remote), str(elsewhere))
    (elsewhere / "theirs.txt").write_text("theirs\n")
    git(elsewhere, "add", "theirs.txt")
    git(elsewhere, "commit", "--quiet", "-m", "theirs")
    git(elsewhere, "push", "--quiet", "origin", "main")
    return ada, project, repo, remote


@pytest.mark.parametrize("case", list(CASES))
async def test_a_hostile_repository_config_runs_nothing_on_the_host(
    workspace: WorkspaceService, tmp_path: Path, case: str
) -> None:
    ada, project, repo, remote = await hostile_project(workspace, tmp_path)
    marker = tmp_path / "marker"
    evil = repo / "evil.sh"
    evil.write_text(f'#!/bin/sh\necho "$0 $*" >> {marker}\ncat\n')
    evil.chmod(0o755)
    hostile = CASES[case]
    if hostile.prepare is not None:
        hostile.prepare(repo, remote)
    if case == "core.hooksPath and hooks":
        with_hooks(repo, evil)
    if case == "include.path":
        with_include(repo, evil)
    for key, value in hostile.entries:
        key = key.format(marker=marker)
        git(repo, "config", "--add", key, value.format(evil=evil, repo=repo, marker=marker))
    if hostile.attributes:
        (repo / ".gitattributes").write_text(hostile.attributes)
    (repo / "README.md").write_text("# repo\n\nchanged by the user\n")

    refused = await every_git_route(workspace, ada, project.id)

    assert not marker.exists(), (marker.read_text(), refused)


async def test_a_remote_rewritten_to_a_refused_address_is_refused_before_any_transfer(
    workspace: WorkspaceService, tmp_path: Path
) -> None:
    ada, project, repo, _ = await hostile_project(workspace, tmp_path)
    git(repo, "config", "url.https://127.0.0.1:1/.insteadOf", "file://")
    for call in (
        workspace.stub.GitPull(W.GitPullRequest(project=project.id), metadata=ada.metadata),
        workspace.stub.GitPush(W.GitPushRequest(project=project.id), metadata=ada.metadata),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "127.0.0.1" in (caught.value.details() or "")
        assert "not allowed" in (caught.value.details() or "")


async def test_the_issues_attack_through_a_symlink_to_git_is_refused_and_runs_nothing(
    workspace: WorkspaceService, facade: Client, tmp_path: Path
) -> None:
    """`ln -s .git gitdir` in the terminal, then `PUT /api/v1/files/gitdir/config` with
    `log.showSignature` and `gpg.program = ./evil.sh`, then `GET /api/v1/git/log`."""
    ada = await workspace.user()
    project = await workspace.project(ada, "site")
    repo = workspace.root / ada.id / "site"
    marker = tmp_path / "marker"
    (repo / "evil.sh").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (repo / "evil.sh").chmod(0o755)
    await shell(repo, "ln -s .git gitdir")
    sign_head(repo, PGP)
    config = (repo / ".git" / "config").read_text()
    hostile = config + "[log]\n\tshowSignature = true\n[gpg]\n\tprogram = ./evil.sh\n"

    read = await facade.get(
        f"/api/v1/files/gitdir/config?project={project.id}", headers=bearer(ada)
    )
    assert read.status == 422
    put = await facade.put(
        "/api/v1/files/gitdir/config",
        json={"project": project.id, "content": hostile, "sha": "0" * 40},
        headers=bearer(ada),
    )
    body = await put.json()
    assert (put.status, body["error"]) == (422, "PATH_FORBIDDEN"), body
    assert ".git" in body["message"]
    assert (repo / ".git" / "config").read_text() == config

    # The terminal writes the same config directly: the log still runs nothing on the host.
    (repo / ".git" / "config").write_text(hostile)
    log = await facade.get(f"/api/v1/git/log?project={project.id}", headers=bearer(ada))
    assert log.status == 200, await log.text()
    assert [c["subject"] for c in (await log.json())["data"]][:1] == ["signed"]
    assert not marker.exists()
    with contextlib.suppress(FileNotFoundError):
        marker.unlink()
