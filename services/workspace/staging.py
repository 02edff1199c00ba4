"""The volume's hidden staging folder, beside the users' folders and outside all of them:
where a file is written before it is renamed into place (and a project is built before it is
moved in), and the sweep of what writers killed midway left there.

A writer killed with -9 cannot remove its temporary file. Made here, that file is never in a
project: no listing shows it, no quota counts it, no user's terminal sees it. The sweep removes
it once it is older than any write still in progress could be (replicas share the volume, so
age, not "at start", tells a dead writer's file from a live one's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import stat
import time
from pathlib import Path

from services.runtime.tasks import cancel_and_wait

log = logging.getLogger(__name__)

STAGING = ".staging"
# A write in progress touches its file with every chunk; a project is built in seconds. An
# entry untouched this long belongs to a writer that is gone.
STALE_AFTER = 3600.0
SWEEP_EVERY = 600.0


def staging_folder(root: Path) -> Path:
    """The staging folder of the volume at `root`, made if missing (same file system as every
    project under `root`, so a rename out of it is atomic)."""
    folder = root / STAGING
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sweep(folder: Path, *, older_than: float, now: float | None = None) -> list[str]:
    """Remove every entry of `folder` untouched for `older_than` seconds; the names removed.
    Links are removed as links, never followed."""
    now = time.time() if now is None else now
    removed: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
            if now - info.st_mtime < older_than:
                continue
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            continue  # its writer finished, or another replica swept it, meanwhile
        except OSError:
            log.warning("cannot sweep a stale staging entry", extra={"entry": entry.name})
            continue
        removed.append(entry.name)
    return removed


class Sweeper:
    """Sweeps the staging folder at start and every `every` seconds until closed."""

    def __init__(
        self, folder: Path, *, older_than: float = STALE_AFTER, every: float = SWEEP_EVERY
    ) -> None:
        self.folder = folder
        self.older_than = older_than
        self.every = every
        self._task: asyncio.Task[None] | None = None

    async def sweep_once(self) -> list[str]:
        removed = await asyncio.to_thread(sweep, self.folder, older_than=self.older_than)
        if removed:
            log.info("swept stale staging entries", extra={"count": len(removed)})
        return removed

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="staging-sweeper")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                await self.sweep_once()
            await asyncio.sleep(self.every)

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
