"""Locks by key (a file's path, a user's id): each lives only while someone holds or awaits it,
so a long-running service keeps none for keys it no longer works on. KeyedLocks hold within
this process; VolumeLocks across every replica sharing the workspace volume."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass
class _Shared:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class KeyedLocks(Generic[K]):
    """One holder at a time per key, in this process."""

    def __init__(self) -> None:
        self._held: dict[K, _Shared] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        shared = self._held.get(key)
        if shared is None:
            shared = self._held[key] = _Shared()
        shared.users += 1
        try:
            async with shared.lock:
                yield
        finally:
            shared.users -= 1
            if shared.users == 0:
                del self._held[key]

    def __len__(self) -> int:
        """How many keys are held or awaited now."""
        return len(self._held)


# The lock files' folder, directly under the workspace root: a user id never starts with a dot.
LOCK_FOLDER = ".locks"
# Lock files on the shared volume: a key's file is one of this many, by its hash. Bounded (a
# long-lived volume does not collect one file per path ever written); two keys sharing a
# stripe only wait for each other, which at this many is rare.
STRIPES = 4096
# Seconds between two tries of a lock file held elsewhere: the first short, then doubling.
RETRY_FIRST = 0.002
RETRY_MAX = 0.05


class VolumeLocks:
    """One holder at a time per key across every replica that shares the volume: this process's
    lock first (its own callers queue in order, without polling), then an exclusive `flock` on
    the key's stripe file under `folder`, which another process holds until its write is done.

    `folder` lies on the shared volume beside the users' folders, never inside one (a user's
    sandbox could otherwise hold a lock file and stall everyone's writes). Without a folder
    (tools, tests of other rules), the locks hold in this process only."""

    def __init__(self, folder: Path | None) -> None:
        self._folder = folder
        self._local: KeyedLocks[str] = KeyedLocks()

    @contextlib.asynccontextmanager
    async def hold(self, *keys: str) -> AsyncIterator[None]:
        """All of `keys` at once. Every holder takes locks in one order (keys sorted, then
        stripes by number, a stripe two keys share taken once), so two holders of the same
        keys never wait for each other in a circle, in one process or across replicas."""
        async with contextlib.AsyncExitStack() as held:
            for key in sorted(set(keys)):
                await held.enter_async_context(self._local.hold(key))
            for stripe in sorted({self._stripe(key) for key in keys} if self._folder else ()):
                descriptor = await self._acquire(stripe)
                held.callback(os.close, descriptor)  # closing the file releases its flock
            yield

    def _stripe(self, key: str) -> Path:
        assert self._folder is not None
        number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % STRIPES
        return self._folder / f"{number:04d}.lock"

    async def _acquire(self, path: Path) -> int:
        descriptor = _open_lock_file(path)
        delay = RETRY_FIRST
        try:
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return descriptor
                except BlockingIOError:
                    # Not blocking: a wait in a thread could not be cancelled with its caller.
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)
        except BaseException:
            os.close(descriptor)
            raise

    def __len__(self) -> int:
        return len(self._local)


def _open_lock_file(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
