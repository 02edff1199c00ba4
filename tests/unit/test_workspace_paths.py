"""Path safety and atomic writes of the workspace service."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.runtime.errors import FailedPrecondition, InvalidArgument
from services.workspace.paths import (
    atomic_write,
    check_again_after_creating_parents,
    open_project_folder,
    resolve_inside,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    workspace = tmp_path / "alice"
    (workspace / "docs").mkdir(parents=True)
    (workspace / "docs" / "a.txt").write_text("a")
    return workspace


def assert_rejected(root: Path, user_path: str) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        resolve_inside(root, user_path)
    assert [name for name, _ in caught.value.fields] == ["path"]
    return caught.value


def test_a_plain_relative_path_resolves_inside_the_root(root: Path) -> None:
    assert resolve_inside(root, "docs/a.txt") == root.resolve() / "docs" / "a.txt"
    assert resolve_inside(root, "docs/new/file.md") == root.resolve() / "docs" / "new" / "file.md"
    assert resolve_inside(root, "") == root.resolve()


def test_nul_bytes_are_rejected_before_anything_else(root: Path) -> None:
    error = assert_rejected(root, "../\x00etc")
    assert "NUL" in error.message


def test_absolute_paths_are_rejected(root: Path) -> None:
    assert_rejected(root, "/etc/passwd")
    assert_rejected(root, str(root / "docs"))


@pytest.mark.parametrize("user_path", ["..", "../bob", "docs/../../bob", "docs/..", "./docs"])
def test_dot_segments_are_rejected(root: Path, user_path: str) -> None:
    assert_rejected(root, user_path)


@pytest.mark.parametrize(
    "user_path",
    ["%2e%2e/bob", "%2E%2E%2Fbob", "docs%2f..%2fbob", "%252e%252e/bob", "..%5cbob", "a%25b"],
)
def test_percent_encoded_traversal_is_rejected(root: Path, user_path: str) -> None:
    assert_rejected(root, user_path)


@pytest.mark.parametrize("user_path", ["..\\bob", "docs\\a.txt"])
def test_backslashes_are_rejected_as_separators(root: Path, user_path: str) -> None:
    assert_rejected(root, user_path)


@pytest.mark.parametrize("user_path", ["docs/a\nb", "tab\there", "bell\x07", "del\x7f"])
def test_control_characters_in_names_are_rejected(root: Path, user_path: str) -> None:
    assert_rejected(root, user_path)


def test_names_longer_than_255_bytes_are_rejected(root: Path) -> None:
    assert resolve_inside(root, "x" * 255).name == "x" * 255
    assert_rejected(root, "x" * 256)
    assert_rejected(root, "é" * 128)  # 256 bytes in UTF-8


def test_paths_longer_than_4096_bytes_are_rejected(root: Path) -> None:
    assert_rejected(root, "/".join(["d" * 100] * 41))


def test_a_symlink_inside_the_root_pointing_outside_is_rejected(root: Path) -> None:
    (root / "etc").symlink_to("/etc")
    assert_rejected(root, "etc")
    assert_rejected(root, "etc/passwd")


def test_a_symlinked_parent_directory_leading_outside_is_rejected(
    root: Path, tmp_path: Path
) -> None:
    other = tmp_path / "bob"
    other.mkdir()
    (other / "secret.txt").write_text("bob's")
    (root / "docs" / "shared").symlink_to(other, target_is_directory=True)
    assert_rejected(root, "docs/shared/secret.txt")
    assert_rejected(root, "docs/shared/new.txt")


def test_a_symlink_that_stays_inside_the_root_is_allowed(root: Path) -> None:
    (root / "link").symlink_to(root / "docs")
    assert resolve_inside(root, "link/a.txt") == root.resolve() / "docs" / "a.txt"


def test_creating_parents_checks_again_for_a_symlink_that_appeared(
    root: Path, tmp_path: Path
) -> None:
    target = resolve_inside(root, "late/file.txt")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "late").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidArgument) as caught:
        check_again_after_creating_parents(root, target)
    assert caught.value.fields[0][0] == "path"

    fresh = resolve_inside(root, "made/deep/file.txt")
    assert check_again_after_creating_parents(root, fresh) == fresh
    assert (root / "made" / "deep").is_dir()


async def test_atomic_write_replaces_the_file_with_all_chunks(root: Path) -> None:
    target = root / "docs" / "a.txt"
    placed = await atomic_write(target, [b"hello ", b"world"])
    assert placed.size == 11
    assert target.read_bytes() == b"hello world"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


async def test_atomic_write_accepts_an_async_stream_of_chunks(root: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"x" * 1000, b"y" * 24):
            yield part

    target = root / "docs" / "upload.bin"
    assert (await atomic_write(target, chunks())).size == 1024
    assert target.read_bytes() == b"x" * 1000 + b"y" * 24


async def test_atomic_write_leaves_nothing_half_written_when_the_chunks_fail(root: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"new contents, part one"
        raise OSError("connection lost")

    target = root / "docs" / "a.txt"
    with pytest.raises(OSError, match="connection lost"):
        await atomic_write(target, chunks())
    assert target.read_text() == "a"
    assert sorted(os.listdir(target.parent)) == ["a.txt"]


async def test_a_cancelled_atomic_write_leaves_nothing_behind(root: Path) -> None:
    started = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first part"
        started.set()
        await asyncio.Event().wait()
        yield b"never"

    target = root / "docs" / "fresh.txt"
    task = asyncio.create_task(atomic_write(target, chunks()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not target.exists()
    assert sorted(os.listdir(target.parent)) == ["a.txt"]


async def test_atomic_write_makes_its_folders_again_when_a_delete_removes_them_meanwhile(
    root: Path, tmp_path: Path
) -> None:
    """Its folder deleted while it writes (through another replica, whose lock is the
    folder's): with `make_folders` the write comes after the delete, and what it read back
    of its file before the rename is the answer; without, it fails and leaves nothing."""
    staging = tmp_path / "staging"
    staging.mkdir()
    target = root / "new" / "deep" / "a.txt"

    def chunks() -> Iterator[bytes]:
        yield b"first "
        shutil.rmtree(root / "new")
        yield b"second"

    def read_back(fd: int) -> str:
        return os.read(fd, 100).decode()

    (root / "new" / "deep").mkdir(parents=True)
    with pytest.raises(FileNotFoundError):
        await atomic_write(target, chunks(), inside=root, staging=staging)
    assert not (root / "new").exists()
    assert list(staging.iterdir()) == []
    (root / "new" / "deep").mkdir(parents=True)
    placed = await atomic_write(
        target, chunks(), inside=root, staging=staging, make_folders=True, read_back=read_back
    )
    assert target.read_bytes() == b"first second"
    assert (placed.size, placed.read_back) == (12, "first second")
    assert list(staging.iterdir()) == []

    def project_deleted() -> Iterator[bytes]:
        yield b"first "
        shutil.rmtree(root)
        yield b"second"

    with pytest.raises(FileNotFoundError):  # its project is gone: not made again
        await atomic_write(
            target, project_deleted(), inside=root, staging=staging, make_folders=True
        )
    assert list(staging.iterdir()) == []


def moved_once_opened(
    monkeypatch: pytest.MonkeyPatch, folder: Path, move: Callable[[], object]
) -> None:
    """The first opening of `folder` is followed at once by `move`: a rename or a delete of
    the project through another replica landing between the opening and its check."""
    real_open = os.open
    pending = [move]

    def opening(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, *args, **kwargs)
        if pending and Path(path) == folder:
            pending.pop()()
        return fd

    monkeypatch.setattr(os, "open", opening)


def test_a_project_folder_renamed_once_opened_is_not_found_not_forbidden(
    monkeypatch: pytest.MonkeyPatch, root: Path
) -> None:
    """Moved to its new name (a rename) after it was opened, before it was checked: not a path
    leading outside (400 PATH_FORBIDDEN), but no folder there (the caller looks again)."""
    moved_once_opened(monkeypatch, root, lambda: root.rename(root.with_name("bob")))
    with pytest.raises(FileNotFoundError):
        open_project_folder(root)
    assert root.with_name("bob").is_dir() and not root.exists()


def test_a_project_folder_deleted_once_opened_is_not_found_not_forbidden(
    monkeypatch: pytest.MonkeyPatch, root: Path, tmp_path: Path
) -> None:
    """Moved to the staging area and removed (a delete) after it was opened."""
    trash = tmp_path / "staging" / "deleted-1"
    trash.parent.mkdir()

    def delete() -> None:
        root.rename(trash)
        shutil.rmtree(trash)

    moved_once_opened(monkeypatch, root, delete)
    with pytest.raises(FileNotFoundError):
        open_project_folder(root)


def test_a_project_folder_replaced_once_opened_is_the_one_there_now(
    monkeypatch: pytest.MonkeyPatch, root: Path
) -> None:
    """Renamed away after it was opened, and another project renamed to its name: the folder
    opened is the one at the path now."""
    other = root.with_name("other")
    other.mkdir()

    def swap() -> None:
        root.rename(root.with_name("bob"))
        other.rename(root)

    moved_once_opened(monkeypatch, root, swap)
    fd = open_project_folder(root)
    try:
        assert os.fstat(fd).st_ino == os.stat(root).st_ino
        assert os.readlink(f"/proc/self/fd/{fd}") == str(root)
    finally:
        os.close(fd)


def test_a_project_folder_swapped_for_a_link_is_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.rmtree(root)
    root.symlink_to(outside, target_is_directory=True)
    with pytest.raises(FailedPrecondition) as caught:
        open_project_folder(root)
    assert caught.value.reason == "PROJECT_FOLDER_REPLACED"
