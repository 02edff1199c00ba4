"""Per-user workspace quotas: bytes and files over all of a user's projects, `.git` included.

Usage is measured by a scan of the user's folder (in a thread, never on the event loop, links
not followed), adjusted after each write this service makes and measured again every
`interval` seconds for every user seen, because the terminal writes files too (its sandbox's
file-size limit bounds a single file; the scan catches the rest).

Replicas share the volume, so they share what they know of a user: one small book per user
(JSON in QUOTA_FOLDER on the volume, changed only under the user's volume lock) holds the usage
last measured, the changes every replica made since, and the room each write under way holds.
Taking room is one step under that lock: read, check, record; the write itself is not under it.
Without that folder (tools, tests of other rules) the books live in this process.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from services.runtime.errors import DomainError, Kind
from services.runtime.tasks import cancel_and_wait
from services.workspace.locks import VolumeLocks

log = logging.getLogger(__name__)
T = TypeVar("T")
BYTES = "bytes"
FILES = "files"
# Seconds a write's room stays held without news from it (an upload's steps renew it): the
# room of a replica killed mid-write comes back after this, since nothing else gives it back.
# A write that outlives its lease takes its whole room again, checked, at its next step.
LEASE = 120.0
# Changes a book keeps: a scan must know those made while it ran (it may or may not have seen
# them). One that more changes overlapped is done again under the lock, where none can be.
KEEP = 64
# The books' folder, directly under the workspace root, outside every user's folder (no sandbox
# can hold a book's lock): a user id never starts with a dot.
QUOTA_FOLDER = ".quota"
# An upload records its bytes in the book once they pass a 64th of the room left at its last
# step, at most SLICE, and before it lands: a step a slice, not a chunk, and what it has taken
# unrecorded is never more than a sliver of the room.
SLICE = 1024 * 1024


@dataclass(frozen=True)
class Usage:
    bytes: int
    files: int

    def plus(self, size: int, files: int) -> Usage:
        return Usage(max(0, self.bytes + size), max(0, self.files + files))


class QuotaExceeded(DomainError):
    """A write that would take a user past their quota; the details carry usage and limits.
    Over the byte quota is RESOURCE_EXHAUSTED (HTTP 413), over the file count
    FAILED_PRECONDITION (HTTP 422), both with reason QUOTA_EXCEEDED."""

    reason = "QUOTA_EXCEEDED"

    def __init__(self, exceeded: str, usage: Usage, limits: Usage) -> None:
        if exceeded == BYTES:
            what = f"{usage.bytes} of {limits.bytes} bytes are used"
        else:
            what = f"{usage.files} of {limits.files} files are used"
        super().__init__(
            f"workspace quota exceeded: {what}",
            data={
                "quota": exceeded,
                "usedBytes": str(usage.bytes),
                "usedFiles": str(usage.files),
                "limitBytes": str(limits.bytes),
                "limitFiles": str(limits.files),
            },
        )
        self.kind = Kind.RESOURCE_EXHAUSTED if exceeded == BYTES else Kind.FAILED_PRECONDITION
        self.exceeded = exceeded
        self.usage = usage
        self.limits = limits


def measure(folder: Path) -> Usage:
    """Bytes of regular files and count of every non-folder entry under `folder`; links are
    counted, never followed."""
    size = files = 0
    pending = [str(folder)]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue  # removed, or not readable, since it was listed
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                pending.append(entry.path)
                continue
            files += 1
            if stat.S_ISREG(info.st_mode):
                size += info.st_size
    return Usage(size, files)


# A recorded change: its number in the book, then bytes and files (None: of unknown size, a
# delete or a lapsed write, after which the usage is measured again).
Change = tuple[int, int | None, int | None]


@dataclass
class _Book:
    """What every replica knows of one user's quota."""

    usage: Usage | None = None  # None: never measured, or made unknown by a delete
    measured_at: float = 0.0  # when that scan began
    generation: int = 0  # the number of the last change recorded
    changes: list[Change] = field(default_factory=list)  # the last KEEP
    held: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # bytes, files, lease

    def since(self, generation: int) -> list[Change] | None:
        """The changes recorded after `generation`; None when the book no longer has them all
        (more than it keeps, or the book was lost and begun again)."""
        after = [change for change in self.changes if change[0] > generation]
        return after if len(after) == self.generation - generation else None

    def holding(self, *, besides: str) -> Usage:
        held = [room for name, room in self.held.items() if name != besides]
        return Usage(sum(room[0] for room in held), sum(room[1] for room in held))

    def encode(self) -> bytes:
        usage = None if self.usage is None else [self.usage.bytes, self.usage.files]
        return json.dumps(
            [usage, self.measured_at, self.generation, self.changes, self.held]
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> _Book:
        if not data.strip():
            return cls()
        try:
            usage, measured_at, generation, changes, held = json.loads(data)
        except (ValueError, TypeError):
            log.warning("a workspace quota book was unreadable: it begins again")
            return cls()
        return cls(
            None if usage is None else Usage(*usage),
            measured_at,
            generation,
            [(c[0], c[1], c[2]) for c in changes],
            {name: (room[0], room[1], room[2]) for name, room in held.items()},
        )


class Quotas:
    """Usage per user folder, and the check every write goes through."""

    def __init__(
        self,
        limits: Usage,
        *,
        interval: float,
        shared: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = limits
        self.interval = interval
        # Books and their lock files in a folder of their own (QUOTA_FOLDER), not the files'
        # lock folder: a write takes room while it holds its file's lock, and one stripe file
        # taken twice by one process would never be had.
        self._shared = shared
        self._locks = VolumeLocks(shared)
        self._books: dict[Path, _Book] = {}  # without `shared`
        self._clock = clock  # the wall clock: books are read by replicas on other machines
        # Changes this service made and has not yet recorded (that needs the lock): a write's
        # room is given back in the step that records its change, so it is never uncounted.
        self._unsent: dict[Path, list[Usage | None]] = {}
        self._seen: set[Path] = set()  # rescanned every interval
        owner = uuid.uuid4().hex[:12]
        self._names = (f"{owner}-{n}" for n in itertools.count())
        self._flushes: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    async def _step(
        self, folder: Path, change: Callable[[_Book], T], *, measured: bool = False
    ) -> T:
        """`change` applied to the folder's book under its lock, once this service's unsent
        changes are in it and lapsed reservations out of it. On the volume, the book is read,
        changed and written in one thread. `measured`: the usage is measured first, under the
        lock, where no change can be recorded meanwhile (a write that lands meanwhile still
        holds its room, and counts twice until the next scan)."""
        async with self._locks.hold(f"quota:{folder}"):
            unsent = self._unsent.pop(folder, [])
            if self._shared is None:
                book = self._books.setdefault(folder, _Book())
                self._record(folder, book, unsent)
                if measured:
                    began = self._clock()
                    book.usage, book.measured_at = await asyncio.to_thread(measure, folder), began
                return change(book)
            path = self._shared / f"{folder.name}.json"
            try:
                return await _whole(self._change_book, path, folder, unsent, change, measured)
            except OSError:
                self._unsent[folder] = unsent + self._unsent.get(folder, [])  # for the next step
                raise

    def _change_book(
        self,
        path: Path,
        folder: Path,
        unsent: list[Usage | None],
        change: Callable[[_Book], T],
        measured: bool,
    ) -> T:
        descriptor = _open_book(path)
        try:
            read = os.pread(descriptor, os.fstat(descriptor).st_size, 0)
            book = _Book.decode(read)
            try:
                self._record(folder, book, unsent)
                if measured:
                    book.measured_at = self._clock()
                    book.usage = measure(folder)
                return change(book)
            finally:
                if (written := book.encode()) != read:
                    # In place, padded with spaces (JSON ignores them) over a longer one before:
                    # a temporary file renamed over the book made each step several times
                    # slower (ext4 writes out a file renamed over another). A write torn by a
                    # crash of the machine leaves a book that cannot be read: it begins again.
                    os.pwrite(descriptor, written.ljust(len(read)), 0)
        finally:
            os.close(descriptor)

    def _record(self, folder: Path, book: _Book, unsent: list[Usage | None]) -> None:
        for change in unsent:
            book.generation += 1
            if change is None:
                book.usage = None
            elif book.usage is not None:
                book.usage = book.usage.plus(change.bytes, change.files)
            size, files = (None, None) if change is None else (change.bytes, change.files)
            book.changes.append((book.generation, size, files))
        now = self._clock()
        lapsed = [name for name, (_, _, lease) in book.held.items() if lease < now]
        for name in lapsed:
            del book.held[name]
        if lapsed:
            # Its replica died mid-write, perhaps after its file landed and before its change
            # was recorded: what it left is measured again.
            log.warning("a write's room in the quota lapsed", extra={"folder": folder.name})
            book.generation += 1
            book.usage = None
            book.changes.append((book.generation, None, None))
        del book.changes[:-KEEP]

    def _stale(self, book: _Book) -> bool:
        return book.usage is None or self._clock() - book.measured_at > self.interval

    async def usage(self, folder: Path, *, fresh: bool = False) -> Usage:
        """The folder's usage: measured when unknown, older than the interval, or `fresh`.

        A scan that a change overlapped (by any replica: the book numbers them) may or may not
        have seen it. Then the usage known before stands (the change is already added to it)
        and the next scan tries again; only a `fresh` answer (after a pull, which nothing
        accounted) takes the scan and adds those changes on top, erring towards refusing."""
        self._seen.add(folder)

        def look(book: _Book) -> tuple[Usage | None, float, int]:
            known = None if fresh or self._stale(book) else book.usage
            return known, self._clock(), book.generation

        known, began, since = await self._step(folder, look)
        if known is not None:
            return known
        measured = await asyncio.to_thread(measure, folder)

        def settle(book: _Book) -> Usage | None:
            raced = book.since(since)
            if raced is None:
                return None  # more changes than the book keeps: measure under the lock
            if raced and book.usage is not None and not fresh:
                book.measured_at = began  # trusted as of then: scan again next interval
                return book.usage
            usage = measured
            for _, size, files in raced:
                if size is not None and files is not None:  # unknown: a delete, seen or not
                    usage = usage.plus(size, files)
            book.usage, book.measured_at = usage, began
            return usage

        usage = await self._step(folder, settle)
        if usage is None:
            usage = await self._step(folder, _usage, measured=True)
        assert usage is not None
        return usage

    async def check(self, folder: Path, *, size: int = 0, files: int = 0) -> Usage:
        """Refuse, before it is made, a change that adds `size` bytes and `files` files (either
        may be negative) when it would end past a limit it does not already shrink."""
        usage = await self.usage(folder)
        self.refuse_beyond(usage, size=size, files=files)
        return usage

    async def reserve(self, folder: Path, *, size: int = 0, files: int = 0) -> Reservation:
        """`check`, counting the writes under way on every replica, and hold the room until the
        reservation is released (after the write's own `changed`): concurrent writes cannot
        overrun."""
        reservation = Reservation(self, folder, next(self._names))
        await reservation.grow(size=size, files=files)
        return reservation

    async def _take(self, folder: Path, name: str, held: Usage, *, first: bool) -> int:
        """Record that reservation `name` holds `held` in all; the bytes left free after. Its
        first take measures a stale usage; later ones (an upload's) only an unknown one."""
        self._seen.add(folder)
        room = await self._step(folder, partial(self._hold, name=name, held=held, first=first))
        if room is None:
            await self.usage(folder)  # outside the lock: a scan may be long
            room = await self._step(folder, partial(self._hold, name=name, held=held))
        if room is None:  # a delete made it unknown again
            hold = partial(self._hold, name=name, held=held)
            room = await self._step(folder, hold, measured=True)
        assert room is not None
        return room

    def _hold(self, book: _Book, *, name: str, held: Usage, first: bool = False) -> int | None:
        """None when the usage must be measured first; QuotaExceeded when what `held` adds does
        not fit beside the usage and the room every other write holds."""
        if book.usage is None or (first and self._stale(book)):
            return None
        room = book.held.get(name)  # None when new, or lapsed: then all of it is checked again
        had = Usage(0, 0) if room is None else Usage(room[0], room[1])
        others = book.holding(besides=name)
        counted = book.usage.plus(others.bytes + had.bytes, others.files + had.files)
        try:
            self.refuse_beyond(counted, size=held.bytes - had.bytes, files=held.files - had.files)
        except QuotaExceeded:
            # Its write is abandoned: its room comes back now, so that two writes that cannot
            # both fit never refuse each other both.
            book.held.pop(name, None)
            raise
        book.held[name] = (held.bytes, held.files, self._clock() + LEASE)
        return self.limits.bytes - book.usage.bytes - others.bytes - held.bytes

    async def _give_back(self, folder: Path, name: str) -> None:
        def give_back(book: _Book) -> None:
            book.held.pop(name, None)

        await self._step(folder, give_back)  # with the write's change, recorded first

    def refuse_beyond(self, usage: Usage, *, size: int = 0, files: int = 0) -> None:
        after = usage.plus(size, files)
        if size > 0 and after.bytes > self.limits.bytes:
            raise QuotaExceeded(BYTES, usage, self.limits)
        if files > 0 and after.files > self.limits.files:
            raise QuotaExceeded(FILES, usage, self.limits)

    async def check_now(self, folder: Path) -> None:
        """After a change this service could not size beforehand (a pull): measure afresh and
        refuse if the folder is past a limit."""
        usage = await self.usage(folder, fresh=True)
        exceeded = BYTES if usage.bytes > self.limits.bytes else None
        if usage.files > self.limits.files:
            exceeded = exceeded or FILES
        if exceeded is not None:
            # The caller takes the change back: the usage left is measured at the next check
            # (kept, it would refuse every replica's writes until the next scan).
            self.forget(folder)
            raise QuotaExceeded(exceeded, usage, self.limits)

    def changed(self, folder: Path, *, size: int = 0, files: int = 0) -> None:
        """Account a change this service has just completed, recorded in the book by the next
        step under its lock (the write's release, which follows); the periodic scan corrects
        any drift (files the terminal wrote, a change counted twice)."""
        self._unsent.setdefault(folder, []).append(Usage(size, files))

    def forget(self, folder: Path) -> None:
        """A change of unknown size (a recursive delete): every replica measures again at its
        next check. Recorded at once, so that none refuses on the usage from before."""
        self._unsent.setdefault(folder, []).append(None)
        task = asyncio.create_task(self._flush(folder), name="workspace-quota-record")
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, folder: Path) -> None:
        try:
            await self._step(folder, _usage)
        except Exception:  # the next step under the lock records it
            log.exception("recording a workspace change failed", extra={"folder": folder.name})

    def start(self) -> None:
        self._task = asyncio.create_task(self._rescan_forever(), name="workspace-quota-scan")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await asyncio.gather(*self._flushes)

    async def _rescan_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for folder in list(self._seen):
                try:
                    await self.usage(folder)
                except Exception:  # one unreadable folder must not stop the others' scans
                    log.exception("workspace usage scan failed", extra={"folder": folder.name})


class Reservation:
    """Room a write under way holds in its owner's quota: grown as its bytes arrive (only
    growth is checked), released once the write is accounted or abandoned."""

    def __init__(self, quotas: Quotas, folder: Path, name: str) -> None:
        self._quotas = quotas
        self._folder = folder
        self._name = name
        self._recorded = False
        self._held = Usage(0, 0)  # in the book
        self._grown = Usage(0, 0)  # since: recorded at the next step
        self._slack = 0  # the bytes it may take before that step (see SLICE)
        self._renew_at = 0.0

    async def grow(self, *, size: int = 0, files: int = 0) -> None:
        """Take `size` more bytes and `files` more files; QuotaExceeded if they do not fit.
        Bytes within the slack are recorded, and checked, by a later step: `settle` at the
        latest, which the write awaits before it lands."""
        grown = self._grown = self._grown.plus(max(0, size), max(0, files))
        if not self._recorded or grown.files or grown.bytes > self._slack:
            await self.settle()
        elif self._quotas._clock() >= self._renew_at:
            await self.settle()  # the lease is renewed well before it ends

    async def settle(self) -> None:
        """Record what it took since its last step, checked."""
        if self._recorded and self._grown == Usage(0, 0):
            return
        held = self._held.plus(self._grown.bytes, self._grown.files)
        room = await self._quotas._take(self._folder, self._name, held, first=not self._recorded)
        self._recorded, self._held, self._grown = True, held, Usage(0, 0)
        self._slack = min(SLICE, room // 64)
        self._renew_at = self._quotas._clock() + LEASE / 2

    async def release(self) -> None:
        if self._recorded or self._folder in self._quotas._unsent:
            await self._quotas._give_back(self._folder, self._name)
        self._recorded, self._held, self._grown = False, Usage(0, 0), Usage(0, 0)


def _usage(book: _Book) -> Usage | None:
    return book.usage


def _open_book(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


async def _whole(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in a thread, waited for even when the caller is cancelled: the lock
    must not be let go while the book is being written."""
    work = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait({work})
        raise


__all__ = ["QUOTA_FOLDER", "QuotaExceeded", "Quotas", "Reservation", "Usage", "measure"]
