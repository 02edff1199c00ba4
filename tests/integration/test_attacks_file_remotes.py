"""Another user's repository among the file:// remotes, as an attacker would go for it: Bob, over
the REST API, points a remote of his at Ada's private repository (directly, through `..`, a
link or a `gitdir:` file in his own folder, or a URL his terminal stored in the repository's
config) and pushes to it or pulls from it; or he points a repository of his own folder at hers
(`commondir`), which the URL check cannot see and his sandbox, which holds his folder only,
stops. Each way, Ada's repository is untouched and Bob is answered 422 REMOTE_NOT_ALLOWED,
naming the folder he may use, or a git failure.

The real users and workspace services and the real facade on port 0, git in real sandboxes.
SQLite only: the storage engine plays no part."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from stockfolio.workspace.v1 import workspace_pb2

from tests.integration.workspace_harness import (
    Client,
    User,
    WorkspaceService,
    bearer,
    git,
)

W = workspace_pb2


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


async def call(
    facade: Client, method: str, path: str, who: User, expect: int, **kwargs: Any
) -> dict[str, Any]:
    """`who`'s request; its envelope, which must come with the status `expect`."""
    response = await facade.request(method, path, headers=bearer(who), **kwargs)
    body: dict[str, Any] = await response.json()
    assert response.status == expect, body
    return body


@dataclass
class Scene:
    """Ada's private repository among the file:// remotes (her diary pushed to it) and what
    it held; Bob, his project (one commit of his own) and his folder of the remotes."""

    adas: Path
    adas_refs: str
    bob: User
    project: str
    folder: Path
    bobs: Path

    def refs_untouched(self) -> None:
        assert git(self.adas, "for-each-ref") == self.adas_refs
        assert not (self.folder / "diary.txt").exists()


async def scene(workspace: WorkspaceService) -> Scene:
    ada, adas_project, adas_folder, adas = await workspace.user_with_published_project("diary")
    (adas_folder / "diary.txt").write_text("ada's secret\n")
    for call_ in (
        workspace.stub.GitCommit(
            W.GitCommitRequest(project=adas_project.id, message="Diary"), metadata=ada.metadata
        ),
        workspace.stub.GitPush(W.GitPushRequest(project=adas_project.id), metadata=ada.metadata),
    ):
        await call_
    bob = await workspace.user("Bob")
    project = await workspace.project(bob, "mine")
    folder = workspace.root / bob.id / "mine"
    (folder / "evil.txt").write_text("bob was here\n")
    await workspace.stub.GitCommit(
        W.GitCommitRequest(project=project.id, message="Bob's"), metadata=bob.metadata
    )
    bobs = workspace.remotes / bob.id
    bobs.mkdir()
    return Scene(adas, git(adas, "for-each-ref"), bob, project.id, folder, bobs)


def point_at_adas(scene: Scene, way: str) -> str:
    """A file:// URL that leads to Ada's repository the `way` Bob tries, with what it takes in
    his own folder of the remotes (his doing, however he got to it)."""
    adas = scene.adas
    ada_id = adas.parent.name
    if way == "directly":
        return adas.as_uri()
    if way == "through ..":
        return f"{scene.bobs.as_uri()}/../{ada_id}/{adas.name}"
    if way == "through %2e%2e":
        return f"{scene.bobs.as_uri()}/%2e%2e/{ada_id}/{adas.name}"
    if way == "a link to her repository":
        (scene.bobs / "mine.git").symlink_to(f"../{ada_id}/{adas.name}")
        return (scene.bobs / "mine.git").as_uri()
    if way == "a link to her folder":
        (scene.bobs / "team").symlink_to(f"../{ada_id}")
        return (scene.bobs / "team" / adas.name).as_uri()
    if way == "a gitdir: file":
        (scene.bobs / "mine.git").write_text(f"gitdir: {adas}\n")
        return (scene.bobs / "mine.git").as_uri()
    assert way == "a .git file", way
    (scene.bobs / "mine").mkdir()
    (scene.bobs / "mine" / ".git").write_text(f"gitdir: {adas}\n")
    return (scene.bobs / "mine").as_uri()


WAYS = [
    "directly",
    "through ..",
    "through %2e%2e",
    "a link to her repository",
    "a link to her folder",
    "a gitdir: file",
    "a .git file",
]


def refused_naming_bobs_folder(scene: Scene, body: dict[str, Any]) -> None:
    assert body["error"] == "REMOTE_NOT_ALLOWED", body
    assert f"{scene.bobs.as_uri()}/" in body["message"], body


@pytest.mark.parametrize("way", WAYS)
async def test_bob_can_neither_add_nor_use_a_remote_leading_to_adas_repository(
    workspace: WorkspaceService, facade: Client, way: str
) -> None:
    """Added over REST, the remote is refused. Stored by his terminal in the repository's
    config (or before the rule was), it is refused at the push and at the pull."""
    scene_ = await scene(workspace)
    bob, project = scene_.bob, scene_.project
    url = point_at_adas(scene_, way)
    added = await call(
        facade,
        "POST",
        "/api/v1/git/remotes",
        bob,
        422,
        json={"project": project, "name": "origin", "url": url},
    )
    refused_naming_bobs_folder(scene_, added)
    assert [f["field"] for f in added["details"]["fields"]] == ["url"]
    listed = await call(facade, "GET", f"/api/v1/git/remotes?project={project}", bob, 200)
    assert listed["data"] == []

    git(scene_.folder, "remote", "add", "origin", url)  # his terminal's doing
    head = git(scene_.folder, "rev-parse", "HEAD")
    for route in ("push", "pull"):
        answer = await call(
            facade,
            "POST",
            f"/api/v1/git/{route}",
            bob,
            422,
            json={"project": project, "remote": "origin", "branch": "main"},
        )
        refused_naming_bobs_folder(scene_, answer)
    scene_.refs_untouched()
    assert git(scene_.folder, "rev-parse", "HEAD") == head


async def test_a_repository_of_bobs_pointing_into_adas_by_commondir_reaches_nothing(
    workspace: WorkspaceService, facade: Client
) -> None:
    """A bare repository in Bob's own folder whose `commondir` names Ada's: git takes its refs
    and objects from hers, so a push to it wrote Ada's branch. The URL is Bob's and passes its
    check; his push or pull runs in a sandbox holding his folder only, where hers is not."""
    scene_ = await scene(workspace)
    bob, project = scene_.bob, scene_.project
    common = scene_.bobs / "common.git"
    git(scene_.bobs, "init", "--quiet", "--bare", "--initial-branch=main", str(common))
    (common / "commondir").write_text(f"{scene_.adas}\n")
    await call(
        facade,
        "POST",
        "/api/v1/git/remotes",
        bob,
        200,
        json={"project": project, "name": "origin", "url": common.as_uri()},
    )
    git(scene_.folder, "branch", "topic")  # a branch Ada's repository has not
    head = git(scene_.folder, "rev-parse", "HEAD")
    answers = []
    for route, branch in (("push", "topic"), ("pull", "main")):
        answer = await call(
            facade,
            "POST",
            f"/api/v1/git/{route}",
            bob,
            422,
            json={"project": project, "remote": "origin", "branch": branch},
        )
        answers.append(answer["message"])
        assert answer["error"] == "GIT_FAILED", answer
    assert all("ada's secret" not in answer for answer in answers), answers
    scene_.refs_untouched()
    assert git(scene_.folder, "rev-parse", "HEAD") == head


async def test_the_shared_folder_is_pulled_from_and_never_pushed_to(
    workspace: WorkspaceService, facade: Client, tmp_path: Path
) -> None:
    """The operator publishes a repository in the shared folder: Bob pulls from it; his push
    to it is refused, naming his own folder, and leaves it as it was."""
    scene_ = await scene(workspace)
    bob, project = scene_.bob, scene_.project
    shared = workspace.bare_remote(None, "library.git")
    git(tmp_path, "clone", "--quiet", "--bare", str(scene_.folder), str(tmp_path / "seed.git"))
    git(tmp_path / "seed.git", "push", "--quiet", str(shared), "main")
    elsewhere = tmp_path / "elsewhere"
    git(tmp_path, "clone", "--quiet", str(shared), str(elsewhere))
    (elsewhere / "library.py").write_text("shared = True\n")
    git(elsewhere, "add", "library.py")
    git(elsewhere, "commit", "--quiet", "-m", "The library")
    git(elsewhere, "push", "--quiet", "origin", "main")
    published = git(shared, "for-each-ref")
    await call(
        facade,
        "POST",
        "/api/v1/git/remotes",
        bob,
        200,
        json={"project": project, "name": "library", "url": shared.as_uri()},
    )
    body = {"project": project, "remote": "library", "branch": "main"}
    pulled = await call(facade, "POST", "/api/v1/git/pull", bob, 200, json=body)
    assert pulled["data"]["commit"] == git(shared, "rev-parse", "main")
    assert (scene_.folder / "library.py").read_text() == "shared = True\n"

    (scene_.folder / "more.txt").write_text("more\n")
    await call(
        facade, "POST", "/api/v1/git/commit", bob, 200, json={"project": project, "message": "m"}
    )
    pushed = await call(facade, "POST", "/api/v1/git/push", bob, 422, json=body)
    refused_naming_bobs_folder(scene_, pushed)
    assert "read-only" in pushed["message"]
    assert git(shared, "for-each-ref") == published
    assert sorted(os.listdir(shared.parent)) == ["library.git"]
