"""Erasing a deleted account's data here: the folder holding its projects (their files and git
repositories) and whatever else its terminal left there, its project index, its quota state and
the responses kept for its Idempotency-Keys. Idempotent (a second run finds nothing). Run by the
follower of the users service's deletions (runtime/account_deletions.py).

The folder is `<root>/<user id>` (projects.Projects.user_root: every project is recorded under
it by name), taken out of the user's hands by one rename into the volume's staging folder, in
the transaction that drops its index (a folder that cannot move rolls the index back: tried
again at the next round), then removed there. Neither step follows a link: a rename moves a
link itself, and the removal (shutil.rmtree, by descriptors on Linux) unlinks the links it meets
and never what they point to, so a link a terminal planted to another user's folder or to `/`
costs nothing but itself."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

from sqlalchemy import delete

from services.runtime.db import Database
from services.runtime.errors import InvalidArgument
from services.workspace.orm import (
    idempotency_keys,
    projects,
    quota_changes,
    quota_reservations,
    quota_usage,
)
from services.workspace.paths import validate_name
from services.workspace.staging import staging_folder

# Every table holding a user's rows by their owner column.
_OWNED = (projects, idempotency_keys, quota_reservations, quota_changes, quota_usage)


class AccountErasure:
    def __init__(self, db: Database, root: Path) -> None:
        self._db = db
        self._root = root

    def _folder(self, user_id: str) -> Path | None:
        """The user's folder under the root, None when the id could name none (then no folder
        of theirs was ever made: Projects.user_root refuses the same ids)."""
        try:
            validate_name(user_id)
        except InvalidArgument:
            return None
        return None if user_id.startswith(".") else self._root / user_id

    async def erase(self, user_id: str) -> None:
        folder = self._folder(user_id)
        trash = (await asyncio.to_thread(staging_folder, self._root)) / f"erased-{uuid.uuid4()}"
        async with self._db.transaction() as session:
            for table in _OWNED:
                await session.execute(delete(table).where(table.c.user_id == user_id))
            moved = folder is not None and await asyncio.to_thread(_move_away, folder, trash)
        if moved:
            await asyncio.to_thread(_remove, trash)


def _move_away(folder: Path, trash: Path) -> bool:
    """`folder` renamed to `trash` (a link there moved as a link); False when there is none."""
    try:
        os.rename(folder, trash)
    except FileNotFoundError:
        return False
    return True


def _remove(trash: Path) -> None:
    if trash.is_symlink():
        trash.unlink()
        return
    shutil.rmtree(trash, ignore_errors=True)
