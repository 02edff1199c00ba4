"""The files API never reaches a `.git` folder or leaves the project, whatever symlinks a user's
terminal has made: every operation (read, write, create, delete, move both ways, upload, list,
download) is refused on the resolved path, and nothing on the other side changes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from services.runtime.errors import InvalidArgument
from services.runtime.pagination import page_of
from services.workspace.files import Files

MB = 1024 * 1024
CONFIG = "[core]\n\tbare = false\n"


@pytest.fixture
def files() -> Files:
    return Files(max_text_bytes=MB, max_upload_bytes=MB)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Ada's project `site` beside her project `other` and Bob's folder, with every link a
    terminal could make."""
    ada = tmp_path / "root" / "ada"
    site = ada / "site"
    (site / ".git" / "hooks").mkdir(parents=True)
    (site / ".git" / "config").write_text(CONFIG)
    (site / "docs").mkdir()
    (site / "a.txt").write_text("a\n")
    (ada / "other").mkdir()
    (ada / "other" / "secret.txt").write_text("other project\n")
    bob = tmp_path / "root" / "bob"
    bob.mkdir()
    (bob / "secret.txt").write_text("bob's\n")
    (site / "root_link").symlink_to("/")
    (site / "etc_link").symlink_to("/etc")
    (site / "gitdir").symlink_to(".git")
    (site / "config_link").symlink_to(".git/config")
    (site / "other_link").symlink_to("../other")
    (site / "bob_link").symlink_to(bob)
    (site / "docs" / "shared").symlink_to(bob, target_is_directory=True)
    return site


FORBIDDEN_PATHS = [
    "root_link/etc/hostname",
    "etc_link/hostname",
    "gitdir/config",
    "gitdir/hooks/post-commit",
    "config_link",
    "other_link/secret.txt",
    "bob_link/secret.txt",
    "docs/shared/secret.txt",
    ".git/config",
    ".GIT/config",
    "sub/../.git/hooks/x",
]
FORBIDDEN_FOLDERS = ["root_link", "etc_link", "gitdir", "other_link", "bob_link", "docs/shared"]


def sha_of(path: Path) -> str:
    data = path.read_bytes() if path.is_file() else b""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


async def one_chunk() -> AsyncIterator[bytes]:
    yield b"#!/bin/sh\ntouch /tmp/pwned\n"


Operation = Callable[[Files, Path, str], Awaitable[object]]


async def collect(files: Files, project: Path, path: str) -> bytes:
    _, chunks = await files.download(project, path)
    return b"".join([chunk async for chunk in chunks])


OPERATIONS: dict[str, Operation] = {
    "read": lambda f, p, path: f.read(p, path),
    "update": lambda f, p, path: f.update(p, path, "pwned", "utf-8", sha_of(p / path)),
    "create": lambda f, p, path: f.create(p, path, "pwned", "utf-8", directory=False),
    "create folder": lambda f, p, path: f.create(p, path, "", "", directory=True),
    "delete": lambda f, p, path: f.delete(p, path, recursive=True),
    "move from": lambda f, p, path: f.move(p, path, "moved.txt"),
    "move to": lambda f, p, path: f.move(p, "a.txt", path),
    "upload": lambda f, p, path: f.upload(p, path, one_chunk()),
    "download": collect,
}


def snapshot(tmp_path: Path) -> dict[str, bytes]:
    root = tmp_path / "root"
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.mark.parametrize("path", FORBIDDEN_PATHS)
@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_every_operation_through_a_forbidden_path_is_refused_and_changes_nothing(
    files: Files, project: Path, tmp_path: Path, path: str, operation: str
) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(InvalidArgument) as caught:
        await OPERATIONS[operation](files, project, path)
    field = "newPath" if operation == "move to" else "path"
    assert (caught.value.reason, [f for f, _ in caught.value.fields]) == ("PATH_FORBIDDEN", [field])
    assert snapshot(tmp_path) == before
    assert (project / ".git" / "config").read_text() == CONFIG


@pytest.mark.parametrize("folder", FORBIDDEN_FOLDERS)
async def test_listing_a_link_that_leaves_the_project_or_enters_git_is_refused(
    files: Files, project: Path, folder: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await files.list(project, folder, page_of(1, 100))
    assert caught.value.reason == "PATH_FORBIDDEN"


async def test_a_listing_shows_links_as_links_and_no_git_folder_at_any_depth(
    files: Files, project: Path
) -> None:
    (project / "nested" / ".git").mkdir(parents=True)
    (project / "nested" / "code.py").write_text("x = 1\n")
    top, _ = await files.list(project, "", page_of(1, 100))
    kinds = {e.name: e.kind.value for e in top}
    assert ".git" not in kinds
    assert kinds["gitdir"] == kinds["root_link"] == kinds["bob_link"] == "symlink"
    assert kinds["docs"] == "directory"
    nested, total = await files.list(project, "nested", page_of(1, 100))
    assert ([e.name for e in nested], total) == (["code.py"], 1)


async def test_a_nested_repositorys_git_folder_is_refused_too(files: Files, project: Path) -> None:
    (project / "vendor" / "lib" / ".git").mkdir(parents=True)
    (project / "vendor" / "lib" / ".git" / "config").write_text(CONFIG)
    (project / "vendor" / "inner").symlink_to("lib/.git")
    for path in ("vendor/lib/.git/config", "vendor/inner/config"):
        with pytest.raises(InvalidArgument) as caught:
            await files.read(project, path)
        assert caught.value.reason == "PATH_FORBIDDEN"


async def test_a_link_that_stays_in_the_project_and_out_of_git_still_works(
    files: Files, project: Path
) -> None:
    (project / "docs" / "readme.md").write_text("hello\n")
    (project / "readme_link").symlink_to("docs/readme.md")
    (project / "docs_link").symlink_to("docs")
    assert (await files.read(project, "readme_link")).content == "hello\n"
    assert (await files.read(project, "docs_link/readme.md")).content == "hello\n"
    written = await files.create(project, "docs_link/new.md", "new\n", "utf-8", directory=False)
    assert (written.path, (project / "docs" / "new.md").read_text()) == (
        "docs_link/new.md",
        "new\n",
    )


async def test_a_folder_swapped_for_a_link_after_the_check_is_caught_when_opened(
    files: Files, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The terminal may replace a folder with a link between the path check and the open."""
    import services.workspace.files as module

    (project / "late").mkdir()
    (project / "late" / "x.txt").write_text("mine\n")
    checked = module.locate

    def locate_then_swap(root: Path, path: str) -> Path:
        found = checked(root, path)
        (project / "late" / "x.txt").unlink()
        (project / "late").rmdir()
        (project / "late").symlink_to(tmp_path / "root" / "bob")
        return found

    monkeypatch.setattr(module, "locate", locate_then_swap)
    with pytest.raises(InvalidArgument) as caught:
        await files.read(project, "late/secret.txt")
    assert caught.value.reason == "PATH_FORBIDDEN"
