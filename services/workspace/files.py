"""A project's files: list, read, create, update, delete, move, upload and download.

Every path goes through path safety (services/workspace/paths.py) and names something inside the
project; `.git` is the repository's and no file route reaches it, by its name or through a
symlink (the user's terminal can make any). What is opened is checked again through its
descriptor, so a link swapped in after the check is caught. Writes are atomic (a temporary
file, made in the volume's hidden staging folder, renamed into place). An update names the
`sha` it was based on (the git blob sha of the content, as the GitHub contents API does): a
stale one is a conflict carrying the current sha.
All file system work runs in threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import heapq
import io
import mimetypes
import os
import shutil
import stat
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

from services.runtime.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    Kind,
    NotFound,
)
from services.runtime.idempotency import resuming
from services.runtime.pagination import Page
from services.workspace.locks import VolumeLocks, project_place
from services.workspace.paths import (
    PathForbidden,
    Placed,
    atomic_write,
    check_again_after_creating_parents,
    check_opened,
    is_git_name,
    open_project_folder,
    open_regular,
    opened_parent,
    real_root,
    resolve_inside,
    shown_name,
)
from services.workspace.quota import Quotas, Reservation

READ_CHUNK = 256 * 1024
TEXT = "utf-8"
BASE64 = "base64"


class EntryKind(Enum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"


@dataclass(frozen=True)
class Entry:
    name: str
    path: str
    kind: EntryKind
    size: int
    modified_at: datetime


@dataclass(frozen=True)
class FileContent:
    path: str
    content: str
    encoding: str
    sha: str
    size: int
    modified_at: datetime


@dataclass(frozen=True)
class Written:
    path: str
    sha: str
    size: int
    modified_at: datetime


class ShaMismatch(Conflict):
    """An update based on a stale sha; the details carry the file's current one."""

    reason = "SHA_MISMATCH"

    def __init__(self, path: str, current: str) -> None:
        super().__init__(
            f"{path} has changed since sha was read; its current sha is {current}",
            data={"sha": current},
        )
        self.current = current


class FileTooLarge(DomainError):
    """More bytes than the service takes in one file (the facade answers 413 before this)."""

    kind = Kind.RESOURCE_EXHAUSTED
    reason = "FILE_TOO_LARGE"


class ProjectMoved(NotFound):
    """The project's folder is no longer where it was located (gone, or, as the caller's check
    tells, another project's): a rename or a delete of the project (through another replica)
    came first. The caller looks for the project again: a rename's new place, or 404
    PROJECT_NOT_FOUND for a delete."""

    reason = "PROJECT_NOT_FOUND"


# What a write asks once its locks are held, before it reads or changes anything: raises
# ProjectMoved if the folder is no longer its project's. A folder is there or not; only the
# caller, which knows the project, can tell whose it is (another renamed into its old name).
ProjectCheck = Callable[[], Awaitable[None]]


def check_project_there(project: Path) -> None:
    """ProjectMoved unless the project's folder is there (a real folder, not a link)."""
    try:
        os.close(open_project_folder(project))
    except FileNotFoundError:
        raise ProjectMoved(f"project {project.name!r} was renamed or deleted meanwhile") from None


def file_not_found(path: str) -> NotFound:
    return NotFound(f"{path or '/'} not found", reason="FILE_NOT_FOUND")


def _holds(target: Path, data: bytes, directory: bool) -> bool:
    """Whether `target` is what a create of `data` (or of a folder) would have made."""
    if directory:
        return target.is_dir() and not target.is_symlink()
    return target.is_file() and not target.is_symlink() and _file_sha(target) == blob_sha(data)


def blob_sha(data: bytes) -> str:
    """The git blob sha of `data` (what `git hash-object` prints)."""
    digest = hashlib.sha1(f"blob {len(data)}\0".encode(), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


def _file_sha(path: Path) -> str:
    with os.fdopen(open_regular(path), "rb") as file:
        return _sha_of(file)


def _descriptor_sha(fd: int) -> str:
    """The git blob sha of the file open at `fd`, read from where the descriptor stands."""
    with os.fdopen(os.dup(fd), "rb") as file:
        return _sha_of(file)


def _sha_of(file: io.BufferedReader) -> str:
    size = os.fstat(file.fileno()).st_size
    digest = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    while chunk := file.read(READ_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _checked_sha(project: Path, target: Path, path: str) -> str:
    with _open_checked(project, target, path) as file:
        return _sha_of(file)


def _when(stat_result: os.stat_result) -> datetime:
    return datetime.fromtimestamp(stat_result.st_mtime_ns / 1e9, UTC)


def _clean(path: str) -> str:
    """The path as the API writes it back: relative, '/'-separated, no empty segments."""
    return "/".join(s for s in path.split("/") if s)


def _check_not_reserved(path: str) -> None:
    if any(is_git_name(segment) for segment in path.split("/")):
        raise PathForbidden("the .git folder belongs to the repository")


def locate(project: Path, path: str) -> Path:
    """Where `path` lies in the project: its real parent folder joined with its own name (so a
    symlink is the link itself, never silently its target), after every safety check."""
    _check_not_reserved(path)
    resolve_inside(project, path)
    cleaned = _clean(path)
    if not cleaned:
        return Path(real_root(project))
    parent, _, name = cleaned.rpartition("/")
    return resolve_inside(project, parent) / name


def _decode_content(content: str, encoding: str) -> bytes:
    encoding = encoding.strip().lower() or TEXT
    if encoding == TEXT:
        return content.encode()
    if encoding == BASE64:
        try:
            return base64.b64decode(content, validate=True)
        except ValueError:
            # binascii.Error, and the ValueError a non-ASCII character raises before decoding.
            raise InvalidArgument.field("content", "is not valid base64") from None
    raise InvalidArgument.field("encoding", "must be utf-8 or base64")


def _kind(mode: int) -> EntryKind:
    if stat.S_ISLNK(mode):
        return EntryKind.SYMLINK
    return EntryKind.DIRECTORY if stat.S_ISDIR(mode) else EntryKind.FILE


def _entry(base: str, name: str, target: Path, folder: int | None = None) -> Entry:
    # A symlink is listed as a link (never followed): where it leads is checked when it is used.
    info = os.lstat(target, dir_fd=folder) if folder is not None else target.lstat()
    name = shown_name(name)
    path = f"{base}/{name}" if base else name
    return Entry(name, path, _kind(info.st_mode), info.st_size, _when(info))


def _list_page(project: Path, folder: Path, base: str, page: Page) -> tuple[list[Entry], int]:
    """Folders first, then files, each by name; only the page's entries are stat'ed. `.git`
    folders are never shown, at any depth (a project may hold nested repositories)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise file_not_found(base) from None
    except NotADirectoryError:
        raise InvalidArgument.field("path", "is not a folder") from None
    try:
        check_opened(project, fd)
        with os.scandir(fd) as scan:
            names = [(not item.is_dir(follow_symlinks=False), item.name) for item in scan]
        names = [n for n in names if not is_git_name(n[1])]
        return _page_of(names, fd, base, page)
    finally:
        os.close(fd)


def _page_of(
    names: list[tuple[bool, str]], folder: int, base: str, page: Page
) -> tuple[list[Entry], int]:
    wanted = page.offset + page.limit
    # An early page of a large folder needs only its first entries in order, not all of them.
    ordered = heapq.nsmallest(wanted, names) if wanted * 4 < len(names) else sorted(names)
    shown = ordered[page.offset : wanted]
    entries = []
    for _, name in shown:
        with contextlib.suppress(FileNotFoundError):  # removed while we listed
            entries.append(_entry(base, name, Path(name), folder))
    return entries, len(names)


def _read(project: Path, target: Path, path: str, limit: int) -> FileContent:
    with _open_checked(project, target, path) as file:
        info = os.fstat(file.fileno())
        if info.st_size > limit:
            raise FailedPrecondition(
                f"{path} is {info.st_size} bytes, more than {limit} read as JSON: download it",
                reason="FILE_TOO_LARGE_FOR_JSON",
            )
        data = file.read()
    try:
        content, encoding = data.decode(TEXT), TEXT
    except UnicodeDecodeError:
        content, encoding = base64.b64encode(data).decode(), BASE64
    return FileContent(path, content, encoding, blob_sha(data), len(data), _when(info))


def _written(target: Path, path: str, sha: str) -> Written:
    info = target.stat()
    return Written(path, sha, info.st_size, _when(info))


def _placed(path: str, sha: str, placed: Placed) -> Written:
    """A file just written, as it was written (a delete right after cannot fail the answer)."""
    return Written(path, sha, placed.size, _when(placed.info))


class Files:
    """File operations inside one project folder (the caller located it for its owner). A
    write's `check` (ProjectCheck) is the caller's, run once its locks are held."""

    def __init__(
        self,
        *,
        max_text_bytes: int,
        max_upload_bytes: int,
        quotas: Quotas | None = None,
        lock_folder: Path | None = None,
        staging: Path | None = None,
    ) -> None:
        self.max_text_bytes = max_text_bytes
        self.max_upload_bytes = max_upload_bytes
        # Without quotas (tools, tests of other rules) nothing is counted.
        self._quotas = quotas
        # One writer at a time per file, across every replica on the volume (`lock_folder` on
        # it; without one, in this process only): the sha check and the write are one step.
        self._locks = VolumeLocks(lock_folder)
        # Where writes are made before they are renamed into place (services/workspace/
        # staging.py): a write cut short by kill -9 never shows in a project.
        self._staging = staging

    @property
    def locks(self) -> VolumeLocks:
        """The locks writes hold (Projects holds a project's place on them)."""
        return self._locks

    @contextlib.asynccontextmanager
    async def _writing(
        self, project: Path, *targets: Path, check: ProjectCheck | None
    ) -> AsyncIterator[None]:
        """The locks a change of `targets` holds while it checks and writes: each target's own,
        alone, and those of the folders it lies in inside the project, shared. A move or a
        delete of one of those folders holds that folder's alone: it waits for the writes
        inside it under way on any replica, and they wait for it. So a write lands before
        its folder moves (and moves with it) or after (where its path leads then), never
        checked in one place and written in another (a write that found its file, then its
        folder moved away, answered 404 or made the folder again beside the moved copy).

        The project's place is shared too (`project_place`), which a rename or a delete of
        the project holds alone, and taken in the same step as the rest (one order for every
        holder). Once they are held the project must still be where it was located (its
        folder there, and `check` passed): if a rename or a delete came first, ProjectMoved
        (the caller looks for it again)."""
        inside = Path(real_root(project))
        folders = {
            str(folder)
            for target in targets
            if inside in target.parents
            for folder in target.parents[: target.parents.index(inside)]
        }
        folders.add(project_place(project))
        async with self._locks.hold(*(str(target) for target in targets), shared=folders):
            await asyncio.to_thread(check_project_there, project)
            if check is not None:
                await check()
            yield

    @staticmethod
    def _owner_folder(project: Path) -> Path:
        """The folder the quota counts: every project lies directly in its owner's folder."""
        return project.parent

    @contextlib.asynccontextmanager
    async def _room(
        self, project: Path, *, size: int, files: int, ahead: bool = False
    ) -> AsyncIterator[Reservation | None]:
        """Room in the owner's quota, held while a write is under way (None without quotas):
        writes at once each count the others' (three uploads at once took a user past it).
        `ahead`: a write that grows as its bytes arrive (see `Reservation.grow`)."""
        if self._quotas is None:
            yield None
            return
        folder = self._owner_folder(project)
        reservation = await self._quotas.reserve(folder, size=size, files=files, ahead=ahead)
        try:
            yield reservation
        finally:
            await reservation.release()

    async def _account(
        self, project: Path, room: Reservation | None, *, size: int, files: int
    ) -> None:
        """Count a write just made, and give back the room it held, at once."""
        if self._quotas is not None:
            folder = self._owner_folder(project)
            await self._quotas.changed(folder, size=size, files=files, releasing=room)

    async def list(self, project: Path, path: str, page: Page) -> tuple[list[Entry], int]:
        target = await asyncio.to_thread(locate, project, path)
        return await asyncio.to_thread(_list_page, project, target, _clean(path), page)

    async def read(self, project: Path, path: str) -> FileContent:
        target = await asyncio.to_thread(locate, project, path)
        return await asyncio.to_thread(_read, project, target, _clean(path), self.max_text_bytes)

    def _check_text_size(self, data: bytes) -> None:
        if len(data) > self.max_text_bytes:
            raise FailedPrecondition(
                f"content is more than {self.max_text_bytes} bytes: upload it instead",
                reason="FILE_TOO_LARGE_FOR_JSON",
            )

    async def create(
        self,
        project: Path,
        path: str,
        content: str,
        encoding: str,
        *,
        directory: bool,
        check: ProjectCheck | None = None,
    ) -> Written:
        cleaned = _clean(path)
        if not cleaned:
            raise InvalidArgument.field("path", "is required")
        target = await asyncio.to_thread(locate, project, path)
        data = b"" if directory else _decode_content(content, encoding)
        self._check_text_size(data)
        async with self._writing(project, target, check=check):
            await asyncio.to_thread(check_again_after_creating_parents, project, target)
            if await asyncio.to_thread(os.path.lexists, target):
                if resuming() and await asyncio.to_thread(_holds, target, data, directory):
                    # This request's own file, written before its replica died: done already.
                    sha = "" if directory else blob_sha(data)
                    return await asyncio.to_thread(_written, target, cleaned, sha)
                raise AlreadyExists(f"{cleaned} already exists", reason="FILE_EXISTS")
            if directory:
                await asyncio.to_thread(_make_folder, project, target)
                return await asyncio.to_thread(_written, target, cleaned, "")
            async with self._room(project, size=len(data), files=1) as room:
                # Its folders made again if a delete through another replica removes them
                # meanwhile (that lock is the folder's, not this file's): this comes after it.
                placed = await atomic_write(
                    target, [data], inside=project, staging=self._staging, make_folders=True
                )
                await self._account(project, room, size=len(data), files=1)
        return _placed(cleaned, blob_sha(data), placed)

    async def update(
        self,
        project: Path,
        path: str,
        content: str,
        encoding: str,
        sha: str,
        *,
        check: ProjectCheck | None = None,
    ) -> Written:
        cleaned = _clean(path)
        if not sha.strip():
            raise InvalidArgument.field("sha", "is required: the sha of the content you changed")
        target = await asyncio.to_thread(locate, project, path)
        if await asyncio.to_thread(os.path.islink, target):
            # A link (made in the terminal), read through as GetFile does: the file it names
            # changes and the link stays, as an editor saving through it does.
            target = await asyncio.to_thread(resolve_inside, project, cleaned)
        data = _decode_content(content, encoding)
        self._check_text_size(data)
        async with self._writing(project, target, check=check):
            try:
                info = await asyncio.to_thread(target.stat)
            except FileNotFoundError:
                raise file_not_found(cleaned) from None
            if stat.S_ISDIR(info.st_mode):
                raise InvalidArgument.field("path", "is a folder")
            current = await asyncio.to_thread(_checked_sha, project, target, cleaned)
            if current != sha.strip().lower():
                raise ShaMismatch(cleaned, current)
            async with self._room(project, size=len(data) - info.st_size, files=0) as room:
                # A delete of its folder meanwhile wins (the file it changes is gone: 404).
                placed = await atomic_write(target, [data], inside=project, staging=self._staging)
                await self._account(project, room, size=len(data) - info.st_size, files=0)
        return _placed(cleaned, blob_sha(data), placed)

    async def delete(
        self, project: Path, path: str, *, recursive: bool, check: ProjectCheck | None = None
    ) -> None:
        cleaned = _clean(path)
        if not cleaned:
            raise InvalidArgument.field("path", "is required: the project itself is not a file")
        target = await asyncio.to_thread(locate, project, path)
        async with self._writing(project, target, check=check):
            await asyncio.to_thread(_delete, project, target, cleaned, recursive)
        if self._quotas is not None:
            await self._quotas.forget(self._owner_folder(project))

    async def move(
        self, project: Path, path: str, new_path: str, *, check: ProjectCheck | None = None
    ) -> Entry:
        source_name, target_name = _clean(path), _clean(new_path)
        if not source_name or not target_name:
            field = "path" if not source_name else "newPath"
            raise InvalidArgument.field(field, "is required")
        source = await asyncio.to_thread(locate, project, path)
        try:
            target = await asyncio.to_thread(locate, project, new_path)
        except InvalidArgument as error:
            raise InvalidArgument(
                error.message.replace("path", "newPath", 1),
                fields=[("newPath", d) for _, d in error.fields],
                reason=error.reason,
            ) from None
        if target == source or str(target).startswith(f"{source}{os.sep}"):
            raise InvalidArgument.field("newPath", "cannot be the path itself or inside it")
        # Both paths' locks in one step: in one order for every writer.
        async with self._writing(project, source, target, check=check):
            return await asyncio.to_thread(_move, project, source, target, source_name, target_name)

    async def upload(
        self,
        project: Path,
        path: str,
        chunks: AsyncIterable[bytes],
        *,
        check: ProjectCheck | None = None,
    ) -> Written:
        """Write a streamed file atomically; more than the limit leaves nothing written."""
        cleaned = _clean(path)
        if not cleaned:
            raise InvalidArgument.field("path", "is required")
        target = await asyncio.to_thread(locate, project, path)
        limit = self.max_upload_bytes
        replaced: int | None = None  # read under the file's lock, below
        received = 0

        async def bounded(room: Reservation | None) -> AsyncIterator[bytes]:
            nonlocal received
            async for chunk in chunks:
                grown = max(0, received + len(chunk) - (replaced or 0))
                taken = max(0, received - (replaced or 0))
                received += len(chunk)
                if received > limit:
                    raise FileTooLarge(f"the file is larger than the limit of {limit} bytes")
                if room is not None:
                    # Room is taken ahead, in steps: not a transaction per chunk.
                    await room.grow(size=grown - taken, ahead=True)
                yield chunk

        async with self._writing(project, target, check=check):
            # Under the lock: an upload of the same path that ended meanwhile made the file
            # this one replaces (read before the lock, its bytes were counted twice).
            replaced = await asyncio.to_thread(_size_if_file, target)
            # Counted before anything is written: a new file, then its bytes as they arrive.
            new_file = 1 if replaced is None else 0
            async with self._room(project, size=0, files=new_file, ahead=True) as room:
                created = await asyncio.to_thread(_missing_parents, target)
                try:
                    await asyncio.to_thread(check_again_after_creating_parents, project, target)
                    if await asyncio.to_thread(target.is_dir):
                        raise AlreadyExists(f"{cleaned} is a folder", reason="FILE_EXISTS")
                    # Its folders made again if a delete removes them meanwhile, and its sha
                    # read before the rename: a delete at once never fails it (it comes after
                    # or before the delete, as the locks order them).
                    placed = await atomic_write(
                        target,
                        bounded(room),
                        inside=project,
                        staging=self._staging,
                        make_folders=True,
                        read_back=_descriptor_sha,
                    )
                except BaseException:
                    # Nothing of a failed upload stays: not even the folders made for it.
                    await asyncio.to_thread(_remove_empty, created)
                    raise
                growth = received - (replaced or 0)
                await self._account(project, room, size=growth, files=new_file)
        return _placed(cleaned, placed.read_back or "", placed)

    async def download(self, project: Path, path: str) -> tuple[str, AsyncGenerator[bytes]]:
        """The file's content type and its bytes in chunks (opened before this returns, so a
        missing file fails here, not midway)."""
        cleaned = _clean(path)
        target = await asyncio.to_thread(locate, project, path)
        file = await asyncio.to_thread(_open_checked, project, target, cleaned)
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if content_type.startswith("text/"):
            content_type += "; charset=utf-8"

        async def chunks() -> AsyncGenerator[bytes]:
            try:
                while chunk := await asyncio.to_thread(file.read, READ_CHUNK):
                    yield chunk
            finally:
                # Closing a file opened for reading flushes nothing: it cannot block, and it
                # must happen even while the call is being cancelled.
                file.close()

        return content_type, chunks()


def _size_if_file(target: Path) -> int | None:
    """The size of the file an upload replaces; None when there is none."""
    try:
        info = target.lstat()
    except FileNotFoundError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _missing_parents(target: Path) -> list[Path]:
    """`target`'s parent folders that do not exist yet, deepest first."""
    missing = []
    for parent in target.parents:
        if os.path.lexists(parent):
            break
        missing.append(parent)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _open_checked(project: Path, target: Path, path: str) -> io.BufferedReader:
    """`target` opened for reading, once its descriptor is known to lead inside the project
    and to be a regular file."""
    try:
        fd = open_regular(target)
    except FileNotFoundError:
        raise file_not_found(path) from None
    file = os.fdopen(fd, "rb")
    try:
        check_opened(project, fd)
    except BaseException:
        file.close()
        raise
    return file


def _make_folder(project: Path, target: Path) -> None:
    with opened_parent(project, target) as folder:
        os.mkdir(target.name, dir_fd=folder)


# Deleting and moving act on names in folders opened and checked (`opened_parent`): a folder on
# the way swapped for a link between the check and the act cannot redirect them.


def _delete(project: Path, target: Path, path: str, recursive: bool) -> None:
    try:
        with opened_parent(project, target) as folder:
            mode = os.lstat(target.name, dir_fd=folder).st_mode
            if not stat.S_ISDIR(mode):
                os.unlink(target.name, dir_fd=folder)
            elif recursive:
                shutil.rmtree(target.name, dir_fd=folder)
            else:
                try:
                    os.rmdir(target.name, dir_fd=folder)
                except OSError:
                    raise Conflict(
                        f"{path} is a folder that is not empty: set recursive to delete it all",
                        reason="FOLDER_NOT_EMPTY",
                    ) from None
    except (FileNotFoundError, NotADirectoryError):
        raise file_not_found(path) from None


def _move(project: Path, source: Path, target: Path, source_name: str, target_name: str) -> Entry:
    check_again_after_creating_parents(project, target)
    try:
        with (
            opened_parent(project, source) as source_folder,
            opened_parent(project, target) as target_folder,
        ):
            os.lstat(source.name, dir_fd=source_folder)
            if _exists(target.name, target_folder):
                raise AlreadyExists(f"{target_name} already exists", reason="FILE_EXISTS")
            os.rename(source.name, target.name, src_dir_fd=source_folder, dst_dir_fd=target_folder)
            base, _, name = target_name.rpartition("/")
            return _entry(base, name, Path(target.name), target_folder)
    except (FileNotFoundError, NotADirectoryError):
        raise file_not_found(source_name) from None


def _exists(name: str, folder: int) -> bool:
    try:
        os.lstat(name, dir_fd=folder)
    except FileNotFoundError:
        return False
    return True
