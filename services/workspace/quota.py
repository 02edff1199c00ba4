"""Per-user workspace quotas: bytes and files over all of a user's projects, `.git` included.

Usage is measured by a scan of the user's folder (in a thread, never on the event loop, links
not followed), kept per user, adjusted after each write this service makes and measured again
every `interval` seconds for every user seen, because the terminal writes files too (its
sandbox's file-size limit bounds a single file; the scan catches the rest).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from services.runtime.errors import DomainError, Kind
from services.runtime.tasks import cancel_and_wait

log = logging.getLogger(__name__)
BYTES = "bytes"
FILES = "files"


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


@dataclass
class _Known:
    usage: Usage
    measured_at: float  # when the scan began


class Quotas:
    """Usage per user folder, and the check every write goes through."""

    def __init__(self, limits: Usage, *, interval: float) -> None:
        self.limits = limits
        self.interval = interval
        self._known: dict[Path, _Known] = {}
        # Changes this service made, with when they were complete: a scan that began before a
        # change ended may have missed it, so the change is counted on top of that scan.
        self._changes: dict[Path, list[tuple[float, Usage]]] = {}
        self._locks: dict[Path, asyncio.Lock] = {}
        # What writes under way have taken and not yet accounted: two at once cannot both fit
        # in the room one of them leaves.
        self._pending: dict[Path, Usage] = {}
        self._task: asyncio.Task[None] | None = None

    async def usage(self, folder: Path, *, fresh: bool = False) -> Usage:
        """The folder's usage: measured when unknown, older than the interval, or `fresh`.

        A scan that a change of ours overlapped may or may not have seen it. Then the usage
        known before stands (our changes are already added to it) and the next scan tries
        again; only a `fresh` answer (after a pull, which nothing accounted) takes the scan
        and adds those changes on top, erring towards refusing."""
        loop = asyncio.get_running_loop()
        lock = self._locks.setdefault(folder, asyncio.Lock())
        async with lock:
            known = self._known.get(folder)
            if fresh or known is None or loop.time() - known.measured_at > self.interval:
                began = loop.time()
                measured = await asyncio.to_thread(measure, folder)
                raced = [c for c in self._changes.get(folder, ()) if c[0] >= began]
                self._changes[folder] = raced
                known = self._known.get(folder)
                if raced and known is not None and not fresh:
                    known.measured_at = began  # trusted as of then: scan again next interval
                    return known.usage
                for _, delta in raced:
                    measured = measured.plus(delta.bytes, delta.files)
                known = _Known(measured, began)
                self._known[folder] = known
            return known.usage

    async def check(self, folder: Path, *, size: int = 0, files: int = 0) -> Usage:
        """Refuse, before it is made, a change that adds `size` bytes and `files` files (either
        may be negative) when it would end past a limit it does not already shrink."""
        usage = await self.usage(folder)
        self.refuse_beyond(usage, size=size, files=files)
        return usage

    async def reserve(self, folder: Path, *, size: int = 0, files: int = 0) -> Reservation:
        """`check`, counting the writes under way, and hold the room until the reservation is
        released (after the write's own `changed`): concurrent writes cannot overrun."""
        reservation = Reservation(self, folder, await self.usage(folder))
        reservation.grow(size=size, files=files)
        return reservation

    def _take(self, folder: Path, size: int, files: int, read: Usage) -> None:
        """Take room if it fits beside what writes under way hold; measured usage when known,
        else `read` (what the reservation read: a delete meanwhile forgets the known usage, and
        must not lift the quota for the rest of an upload)."""
        known = self._known.get(folder)
        pending = self._pending.get(folder, Usage(0, 0))
        usage = known.usage if known is not None else read
        self.refuse_beyond(usage.plus(pending.bytes, pending.files), size=size, files=files)
        self._pending[folder] = Usage(pending.bytes + size, pending.files + files)

    def _give_back(self, folder: Path, size: int, files: int) -> None:
        pending = self._pending.get(folder, Usage(0, 0))
        left = Usage(pending.bytes - size, pending.files - files)
        if left == Usage(0, 0):
            self._pending.pop(folder, None)
        else:
            self._pending[folder] = left

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
        if usage.bytes > self.limits.bytes:
            raise QuotaExceeded(BYTES, usage, self.limits)
        if usage.files > self.limits.files:
            raise QuotaExceeded(FILES, usage, self.limits)

    def changed(self, folder: Path, *, size: int = 0, files: int = 0) -> None:
        """Account a change this service has just completed; the periodic scan corrects any
        drift (files the terminal wrote, a change counted twice)."""
        known = self._known.get(folder)
        if known is not None:
            known.usage = known.usage.plus(size, files)
        ended = asyncio.get_running_loop().time()
        self._changes.setdefault(folder, []).append((ended, Usage(size, files)))

    def forget(self, folder: Path) -> None:
        """A change of unknown size (a recursive delete): measure again at the next check."""
        self._known.pop(folder, None)
        self._changes.pop(folder, None)

    def start(self) -> None:
        self._task = asyncio.create_task(self._rescan_forever(), name="workspace-quota-scan")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _rescan_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for folder in list(self._known):
                try:
                    await self.usage(folder)
                except Exception:  # one unreadable folder must not stop the others' scans
                    log.exception("workspace usage scan failed", extra={"folder": folder.name})


class Reservation:
    """Room a write under way holds in its owner's quota: grown as its bytes arrive (only
    growth is checked), released once the write is accounted or abandoned."""

    def __init__(self, quotas: Quotas, folder: Path, read: Usage) -> None:
        self._quotas = quotas
        self._folder = folder
        self._read = read
        self._size = 0
        self._files = 0

    def grow(self, *, size: int = 0, files: int = 0) -> None:
        """Take `size` more bytes and `files` more files; QuotaExceeded if they do not fit."""
        size, files = max(0, size), max(0, files)
        self._quotas._take(self._folder, size, files, self._read)
        self._size += size
        self._files += files

    def release(self) -> None:
        self._quotas._give_back(self._folder, self._size, self._files)
        self._size = self._files = 0


__all__ = ["QuotaExceeded", "Quotas", "Reservation", "Usage", "measure"]
