"""Path safety for user workspaces: every user path resolves inside its root and outside any
repository's `.git` folder, checked on the resolved path (symlinks followed); writes are atomic.

Framework-free: raises domain errors from services.runtime.errors and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
import tempfile
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from services.runtime.errors import Conflict, FailedPrecondition, InvalidArgument

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
FIELD = "path"
# A repository's own folder: its config and hooks steer git, so no file route may reach it.
GIT_DIR = ".git"

# %2e ".", %2f "/", %5c "\", %25 "%" (double encoding): never needed in a real file name here.
_ENCODED_TRAVERSAL = re.compile(r"%(2e|2f|5c|25)", re.IGNORECASE)
# Control characters: never in a name, a path, a remote URL or a git config key we pass on.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
T = TypeVar("T")
# How many times a project's folder is opened again when the one opened moved away before it
# was checked (each time, another rename of the project came first).
_FOLDER_MOVES = 3


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
    if CONTROL_CHARACTERS.search(name):
        raise _invalid("names must not contain control characters")
    if "/" in name or "\\" in name:
        raise _invalid("names must not contain path separators")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise _invalid(f"names are at most {MAX_NAME_BYTES} bytes")
    return name


def shown_name(name: str) -> str:
    """A name as the API can carry it: one that is not UTF-8 (a Latin-1 archive unzipped in
    the terminal) with U+FFFD for its undecodable bytes, so that it is listed and can be renamed
    in the terminal, instead of breaking the whole listing (protobuf strings are UTF-8)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def real_root(root: Path) -> str:
    """Where `root` (a project's folder) really lies: its parent resolved, its own name not
    followed. The folder itself is in the user's hands (a terminal can swap it for a link to
    `/`), so it never decides where "inside" is."""
    return os.path.join(os.path.realpath(root.parent), root.name)


def _check_real(root: Path, real_target: str) -> Path:
    real = real_root(root)
    if os.path.commonpath([real, real_target]) != real:
        raise PathForbidden("path leads outside the workspace")
    if any(is_git_name(part) for part in Path(os.path.relpath(real_target, real)).parts):
        raise PathForbidden("path leads into a .git folder, which belongs to the repository")
    return Path(real_target)


def _check_inside(root: Path, target: Path) -> Path:
    """`target` resolved (every symlink followed); refused unless it lies inside `root` and
    outside any `.git` folder there."""
    try:
        real = os.path.realpath(target)
    except OSError:  # a link on the way became something else while it was followed
        raise Conflict(
            "path changed while it was checked; try again", reason="PATH_CHANGED"
        ) from None
    return _check_real(root, real)


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
    _check_real(root, real)


def folder_entries(folder: str) -> list[tuple[str, os.stat_result]] | None:
    """The names in `folder` (a real path: no link on the way) with what lstat says of each, or
    None when no folder is there now or it is reached only through a link. A walk of a project
    (a watch's scan, the quota's) lists each folder it saw by a path that a terminal may have
    changed meanwhile: a folder on the way swapped for a link to `/` or to another user's folder
    would have been listed, and walked on, where it leads."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            real = folder  # no /proc here: O_NOFOLLOW stands alone
        if real != folder:
            return None
        entries = []
        with os.scandir(fd) as scan:
            for entry in scan:
                try:
                    entries.append((entry.name, entry.stat(follow_symlinks=False)))
                except OSError:
                    continue  # gone since it was listed
        return entries
    except OSError:
        return None
    finally:
        os.close(fd)


def open_project_folder(folder: Path) -> int:
    """A project's folder opened as a place (O_PATH), refused unless it is a real folder where
    its path says: a terminal can swap it for a link, which git's sandbox would otherwise bind
    (its target, writable) and the file routes would take for the project.

    FileNotFoundError when no folder is there, also when the one opened moved away before it
    was checked: a rename or a delete of the project through another replica, which the caller
    waits for and looks the project up again (the moved folder, found at its new place or in
    the staging area, is no path leading outside: PathForbidden would answer 400 for it)."""
    for _ in range(_FOLDER_MOVES):
        fd = _open_project_folder_once(folder)
        try:
            check_opened(folder, fd)
        except PathForbidden:
            try:
                moved = not _still_at(folder, fd)
            finally:
                os.close(fd)
            if moved:
                continue  # opened again: nothing there now (FileNotFoundError), or what is
            raise
        except BaseException:
            os.close(fd)
            raise
        return fd
    raise Conflict(
        f"the folder of project {folder.name!r} moved while it was checked; try again",
        reason="PATH_CHANGED",
    )


def _open_project_folder_once(folder: Path) -> int:
    try:
        return os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise
    except OSError:
        raise FailedPrecondition(
            f"the folder of project {folder.name!r} is not a folder (a link?): put it back",
            reason="PROJECT_FOLDER_REPLACED",
        ) from None


def _still_at(path: Path, fd: int) -> bool:
    """Whether `path` still names the folder open as `fd` (not moved away, nothing else put
    in its place)."""
    try:
        there = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (there.st_dev, there.st_ino) == (opened.st_dev, opened.st_ino)


@contextlib.contextmanager
def opened_parent(root: Path, target: Path) -> Iterator[int]:
    """`target`'s folder, open and checked (`check_opened`): what is then done to `target.name`
    relative to it (`dir_fd`) happens in that very folder, whatever a terminal swaps in
    meanwhile. FileNotFoundError or NotADirectoryError when the folder is not there."""
    fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        check_opened(root, fd)
        yield fd
    finally:
        os.close(fd)


def open_regular(path: Path | str, *, dir_fd: int | None = None) -> int:
    """`path` opened for reading, refused unless it is a regular file: opened without waiting
    (a FIFO made in a terminal would hold a worker thread in open(2) until someone writes)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK, dir_fd=dir_fd)
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return fd
    os.close(fd)
    if stat.S_ISDIR(mode):
        raise _invalid("is a folder: list it instead")
    raise _invalid("is not a regular file (a pipe, socket or device cannot be read)")


def make_parents(root: Path, target: Path) -> None:
    """Create `target`'s missing parent folders one at a time, each inside the last one opened
    and checked: a folder swapped for a link meanwhile cannot make them elsewhere."""
    relative = Path(os.path.relpath(target.parent, real_root(root)))
    if relative.parts[:1] == ("..",):
        raise PathForbidden("path leads outside the workspace")
    try:
        fd = os.open(real_root(root), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:  # the project folder is a link now (or gone): nothing is made
        raise PathForbidden("path leads outside the workspace") from None
    try:
        check_opened(root, fd)
        for part in (p for p in relative.parts if p != "."):
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, dir_fd=fd)
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
            check_opened(root, fd)
    finally:
        os.close(fd)


def check_again_after_creating_parents(root: Path, target: Path) -> Path:
    """Create `target`'s parents, then check again: a symlink may have appeared meanwhile."""
    _check_inside(root, target.parent)
    make_parents(root, target)
    return _check_inside(root, target)


async def _each_chunk(chunks: Iterable[bytes] | AsyncIterable[bytes]) -> AsyncIterable[bytes]:
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk


@dataclass(frozen=True)
class Placed:
    """A file `atomic_write` put in place, as it was written: what its descriptor said (size,
    times) and what `read_back` made of it, both taken before the rename, so that a delete
    right after it cannot fail the write's answer."""

    info: os.stat_result
    read_back: str | None = None

    @property
    def size(self) -> int:
        return self.info.st_size


async def atomic_write(
    path: Path,
    chunks: Iterable[bytes] | AsyncIterable[bytes],
    *,
    inside: Path | None = None,
    staging: Path | None = None,
    make_folders: bool = False,
    read_back: Callable[[int], str] | None = None,
) -> Placed:
    """Write `chunks` to a temporary file, fsync, then rename it over `path`.

    The temporary file is made in `staging`, the volume's hidden staging folder (see
    services/workspace/staging.py), when that lies on `path`'s file system; else (no staging
    folder: tools, tests) beside `path`. In staging, a write cut short by kill -9 leaves its
    temporary file where no listing or quota sees it and the sweep removes it.

    With `inside`, the folder `path` lies in is checked through its open descriptor (see
    `check_opened`), and the rename goes through that descriptor: a link swapped in meanwhile
    cannot redirect it. With `make_folders` too, the folders down to `path` are made again
    (checked the same way) if they were deleted before the rename (another replica deleted
    them, or a shell): the write then comes after the delete instead of failing. `read_back`
    is called on the written file's descriptor (positioned at its start) before the rename.
    On any failure or cancellation the temporary file is removed and `path` is untouched.
    """
    folder = await asyncio.to_thread(_open_folder, path, inside if make_folders else None)
    try:
        if inside is not None:
            await asyncio.to_thread(check_opened, inside, folder)
        where = await asyncio.to_thread(_temporary_folder, folder, path.parent, staging)
        fd, temporary = await asyncio.to_thread(
            tempfile.mkstemp, dir=where, prefix=f".{_head(path.name)}.", suffix=".tmp"
        )
        try:
            try:
                if inside is not None and where == path.parent:
                    await asyncio.to_thread(check_opened, inside, fd)
                async for chunk in _each_chunk(chunks):
                    # In a thread: a slow disk never stalls the event loop.
                    await _finishing(_write_all, fd, chunk)
                await _finishing(os.fsync, fd)
                placed = Placed(os.fstat(fd))
                if read_back is not None:
                    os.lseek(fd, 0, os.SEEK_SET)
                    placed = Placed(placed.info, await _finishing(read_back, fd))
            finally:
                os.close(fd)
            await asyncio.to_thread(
                _rename, temporary, path, folder, inside if make_folders else None
            )
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
    finally:
        os.close(folder)
    return placed


def _open_folder(path: Path, making_inside: Path | None) -> int:
    """`path`'s folder, opened; with `making_inside`, made first (checked inside that project
    folder) if it is missing, unless the project folder itself is gone (deleted)."""
    try:
        return os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        if making_inside is None or not os.path.lexists(making_inside):
            raise
    make_parents(making_inside, path)
    return os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)


def _rename(temporary: str, path: Path, folder: int, making_inside: Path | None) -> None:
    """Rename `temporary` to `path` in `folder` (an open descriptor of its folder); with
    `making_inside`, into the folder made again if it was deleted meanwhile."""
    try:
        os.replace(temporary, path.name, dst_dir_fd=folder)
        return
    except FileNotFoundError:
        # Without staging the temporary file lay in the deleted folder: gone with it.
        if (
            making_inside is None
            or not os.path.exists(temporary)
            or not os.path.lexists(making_inside)
        ):
            raise
    again = _open_folder(path, making_inside)
    try:
        check_opened(making_inside, again)
        os.replace(temporary, path.name, dst_dir_fd=again)
    finally:
        os.close(again)


def _head(name: str, max_bytes: int = 200) -> str:
    """The start of `name` that fits in `max_bytes` of UTF-8 (a temporary name beside it must
    stay under the file system's 255 bytes: 83 three-byte characters are 249 of them)."""
    return name.encode("utf-8", "surrogateescape")[:max_bytes].decode("utf-8", "ignore")


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
    "Placed",
    "atomic_write",
    "check_again_after_creating_parents",
    "check_opened",
    "folder_entries",
    "is_git_name",
    "make_parents",
    "open_project_folder",
    "open_regular",
    "opened_parent",
    "real_root",
    "resolve_inside",
    "validate_name",
]
