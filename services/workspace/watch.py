"""Watching a project for changes, whoever makes them: this service, a terminal, any process.

Scanning, not kernel notifications: a scan of the folder's tree (in a thread, `.git` left out)
every `interval` seconds, compared with the previous one, sees every change however it was
made, on any file system, with no limit on watches. What it reports is the difference between
two scans (a file created and removed between them is not seen), which is what an editor needs
to refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

from services.workspace.files import EntryKind
from services.workspace.paths import folder_entries, is_git_name, real_root, shown_name

# Beyond this many entries a scan stops: a watch is for a project, not a disk.
MAX_ENTRIES = 200_000


class Change(Enum):
    CREATED = "created"
    MODIFIED = "modified"
    DELETED = "deleted"


@dataclass(frozen=True)
class Event:
    change: Change
    path: str
    kind: EntryKind
    time: datetime


class Snapshot(dict[str, tuple[EntryKind, int, int]]):
    """Relative path -> (kind, size, mtime in ns), and the folders listed in full (`complete`,
    "" the root): past MAX_ENTRIES a scan stops, and what it did not reach is unknown, neither
    there nor gone."""

    complete: set[str]

    def __init__(self) -> None:
        super().__init__()
        self.complete = set()

    def knows_absent(self, path: str) -> bool:
        """Whether `path`, not in the snapshot, is known not to exist: its nearest ancestor
        that is in the snapshot (or the root) was listed in full."""
        parent = path
        while True:
            parent = parent.rpartition("/")[0]
            if parent == "" or parent in self:
                return parent in self.complete


def scan(folder: Path) -> Snapshot:
    """Every entry under `folder` but `.git` folders (at any depth), up to MAX_ENTRIES; a
    folder reached only through a link (the project's own, swapped in a terminal) is not
    listed."""
    found = Snapshot()
    pending = [("", real_root(folder))]
    while pending and len(found) < MAX_ENTRIES:
        base, directory = pending.pop()
        entries = folder_entries(directory)
        if entries is None:
            continue  # removed, not readable, or a link now, since it was listed
        found.complete.add(base)
        for entry_name, info in entries:
            if is_git_name(entry_name):
                continue
            name = shown_name(entry_name)
            relative = f"{base}/{name}" if base else name
            if stat.S_ISLNK(info.st_mode):
                kind = EntryKind.SYMLINK
            elif stat.S_ISDIR(info.st_mode):
                kind = EntryKind.DIRECTORY
                pending.append((relative, os.path.join(directory, entry_name)))
            else:
                kind = EntryKind.FILE
            size = 0 if kind is EntryKind.DIRECTORY else info.st_size
            found[relative] = (kind, size, info.st_mtime_ns)
    return found


def differences(before: Snapshot, after: Snapshot, now: datetime) -> list[Event]:
    """What changed, where both scans can tell (past the entry limit, a path one scan did not
    reach is neither created nor deleted)."""
    events = [
        Event(Change.DELETED, path, kind, now)
        for path, (kind, _, _) in before.items()
        if path not in after and after.knows_absent(path)
    ]
    for path, state in after.items():
        previous = before.get(path)
        if previous is None:
            if before.knows_absent(path):
                events.append(Event(Change.CREATED, path, state[0], now))
        elif previous[0] is not state[0]:
            # A file replaced by a folder (or a link): the one went, the other came.
            events.append(Event(Change.DELETED, path, previous[0], now))
            events.append(Event(Change.CREATED, path, state[0], now))
        elif previous != state and state[0] is not EntryKind.DIRECTORY:
            # A folder's own mtime moves with its entries, which are reported themselves.
            events.append(Event(Change.MODIFIED, path, state[0], now))
    events.sort(key=lambda e: e.path)
    return events


class Watchers:
    """Runs every watch of this process; `close()` ends them all (at shutdown)."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._closed = asyncio.Event()

    async def close(self) -> None:
        self._closed.set()

    async def start(self, folder: Path) -> AsyncGenerator[list[Event]]:
        """The first scan is taken before this returns: every change after it is reported."""
        first = await asyncio.to_thread(scan, folder)
        return self._follow(folder, first)

    async def _follow(self, folder: Path, previous: Snapshot) -> AsyncGenerator[list[Event]]:
        while not self._closed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self._interval)
            if self._closed.is_set() or not await asyncio.to_thread(_is_folder, folder):
                return  # the project is gone, or its folder a link now
            current = await asyncio.to_thread(scan, folder)
            events = differences(previous, current, datetime.now(UTC))
            previous = current
            if events:
                yield events


def _is_folder(path: Path) -> bool:
    """A folder itself, not a link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
