"""Path safety for user workspaces: every user path resolves inside its root and outside any
repository's `.git` folder, checked on the resolved path (symlinks followed); writes are atomic.

Framework-free: raises domain errors from services.runtime.errors and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from services.runtime.errors import InvalidArgument

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
FIELD = "path"
# A repository's own folder: its config and hooks steer git, so no file route may reach it.
GIT_DIR = ".git"

# %2e ".", %2f "/", %5c "\", %25 "%" (double encoding): never needed in a real file name here.
_ENCODED_TRAVERSAL = re.compile(r"%(2e|2f|5c|25)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
T = TypeVar("T")


def _invalid(description: str) -> InvalidArgument:
    return InvalidArgument.field(FIELD, description)


class PathForbidden(InvalidArgument):
    """A path that is well formed but leads where no file route may go: outside the root
    (through `..` or a symlink) or into a repository's `.git` folder."""

    reason = "PATH_FORBIDDEN"

    def __init__(self, description: str) -> None:
        super().__init__(f"{FIELD}: {description}", fields=[(FIELD, description)])


def is_git_name(name: str) -> bool:
    """`.git` in any case: case-insensitive file systems open `.GIT` as `.git`."""
    return name.lower() == GIT_DIR


def validate_name(name: str) -> str:
    """One path segment: a real name, not `.`/`..`, no control characters, at most 255 bytes."""
    if name in ("", ".", ".."):
        raise _invalid(f"{name!r} is not a valid name")
    if _CONTROL.search(name):
        raise _invalid("names must not contain control characters")
    if "/" in name or "\\" in name:
        raise _invalid("names must not contain path separators")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise _invalid(f"names are at most {MAX_NAME_BYTES} bytes")
    return name


def _check_inside(root: Path, target: Path) -> Path:
    """`target` resolved (every symlink followed); refused unless it lies inside `root` and
    outside any `.git` folder there."""
    real_root = os.path.realpath(root)
    real_target = os.path.realpath(target)
    if os.path.commonpath([real_root, real_target]) != real_root:
        raise PathForbidden("path leads outside the workspace")
    if any(is_git_name(part) for part in Path(os.path.relpath(real_target, real_root)).parts):
        raise PathForbidden("path leads into a .git folder, which belongs to the repository")
    return Path(real_target)


def resolve_inside(root: Path, user_path: str) -> Path:
    """The real path of `user_path` under `root`; InvalidArgument(`path`) if it could escape.

    An empty path names the root itself.
    """
    if "\x00" in user_path:
        raise _invalid("path must not contain NUL bytes")
    if len(user_path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise _invalid(f"path is at most {MAX_PATH_BYTES} bytes")
    if "\\" in user_path:
        raise _invalid("path must use '/' as its separator")
    if user_path.startswith("/"):
        raise _invalid("path must be relative to the workspace")
    if _ENCODED_TRAVERSAL.search(user_path):
        raise _invalid("path must not contain percent-encoded separators or dots")
    segments = [s for s in user_path.split("/") if s != ""] if user_path else []
    for segment in segments:
        validate_name(segment)
    return _check_inside(root, root.joinpath(*segments))


def check_opened(root: Path, fd: int) -> None:
    """Check where an open descriptor really leads, as a path is checked: a symlink swapped in
    between the check of a path and its opening (from a user's terminal) is caught here."""
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return  # no /proc here: the check made before opening stands alone
    _check_inside(root, Path(real))


def check_again_after_creating_parents(root: Path, target: Path) -> Path:
    """Create `target`'s parents, then check again: a symlink may have appeared meanwhile."""
    _check_inside(root, target.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    return _check_inside(root, target)


async def _each_chunk(chunks: Iterable[bytes] | AsyncIterable[bytes]) -> AsyncIterable[bytes]:
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk


async def atomic_write(
    path: Path,
    chunks: Iterable[bytes] | AsyncIterable[bytes],
    *,
    inside: Path | None = None,
    staging: Path | None = None,
) -> int:
    """Write `chunks` to a temporary file, fsync, then rename it over `path`.

    The temporary file is made in `staging`, the volume's hidden staging folder (see
    services/workspace/staging.py), when that lies on `path`'s file system; else (no staging
    folder: tools, tests) beside `path`. In staging, a write cut short by kill -9 leaves its
    temporary file where no listing or quota sees it and the sweep removes it.

    With `inside`, the folder `path` lies in is checked through its open descriptor (see
    `check_opened`), and the rename goes through that descriptor: a link swapped in meanwhile
    cannot redirect it. On any failure or cancellation the temporary file is removed and `path`
    is untouched. Returns the number of bytes written.
    """
    folder = await asyncio.to_thread(os.open, path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if inside is not None:
            await asyncio.to_thread(check_opened, inside, folder)
        where = await asyncio.to_thread(_temporary_folder, folder, path.parent, staging)
        fd, temporary = await asyncio.to_thread(
            tempfile.mkstemp, dir=where, prefix=f".{path.name[:200]}.", suffix=".tmp"
        )
        written = 0
        try:
            try:
                if inside is not None and where == path.parent:
                    await asyncio.to_thread(check_opened, inside, fd)
                async for chunk in _each_chunk(chunks):
                    # In a thread: a slow disk never stalls the event loop.
                    written += await _finishing(_write_all, fd, chunk)
                await _finishing(os.fsync, fd)
            finally:
                os.close(fd)
            await asyncio.to_thread(os.replace, temporary, path.name, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
    finally:
        os.close(folder)
    return written


def _temporary_folder(folder: int, parent: Path, staging: Path | None) -> Path:
    """Where a temporary file for a file in `folder` (open descriptor of `parent`) is made:
    `staging` when it is on the same file system (a rename stays atomic), else `parent`."""
    if staging is not None:
        try:
            if os.stat(staging).st_dev == os.fstat(folder).st_dev:
                return staging
        except FileNotFoundError:
            pass
    return parent


async def _finishing(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in a thread; if the caller is cancelled meanwhile, the thread is still
    waited for before the cancellation goes on (it uses a descriptor about to be closed)."""
    work = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait({work})
        raise


def _write_all(fd: int, chunk: bytes) -> int:
    view = memoryview(chunk)
    while view:
        count = os.write(fd, view)
        view = view[count:]
    return len(chunk)


__all__ = [
    "GIT_DIR",
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "PathForbidden",
    "atomic_write",
    "check_again_after_creating_parents",
    "check_opened",
    "is_git_name",
    "resolve_inside",
    "validate_name",
]
