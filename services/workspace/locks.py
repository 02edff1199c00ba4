"""Locks by key (a file's path, a user's id): each lives only while someone holds or awaits it,
so a long-running service keeps none for keys it no longer works on. A key is held by one
holder alone, or shared by several (the writes inside a folder share its key, so that the
folder stays where it is while they last; a move of the folder holds it alone). KeyedLocks
hold within this process; VolumeLocks across every replica sharing the workspace volume."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections import deque
from collections.abc import AsyncIterator, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass
class _Shared:
    """One key's lock: held by one holder alone (`alone`) or by `sharing` holders at once.
    Those who wait are served in the order they came, so a stream of sharers never starves
    one who needs the key alone."""

    alone: bool = False
    sharing: int = 0
    users: int = 0
    waiting: deque[tuple[bool, asyncio.Future[None]]] = field(default_factory=deque)

    def _free_for(self, shared: bool) -> bool:
        return not self.alone and (shared or self.sharing == 0)

    def _take(self, shared: bool) -> None:
        if shared:
            self.sharing += 1
        else:
            self.alone = True

    async def acquire(self, shared: bool) -> None:
        if not self.waiting and self._free_for(shared):
            self._take(shared)
            return
        turn = asyncio.get_running_loop().create_future()
        self.waiting.append((shared, turn))
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release(shared)  # given it as it was cancelled: handed on
            else:
                with contextlib.suppress(ValueError):  # _wake may have dropped it already
                    self.waiting.remove((shared, turn))
                self._wake()
            raise

    def release(self, shared: bool) -> None:
        if shared:
            self.sharing -= 1
        else:
            self.alone = False
        self._wake()

    def _wake(self) -> None:
        """Hand the key to those first in line it is free for: one who needs it alone, or
        every sharer up to the next one who does."""
        while self.waiting:
            shared, turn = self.waiting[0]
            if turn.done():  # its waiter was cancelled, and is on its way out
                self.waiting.popleft()
                continue
            if not self._free_for(shared):
                return
            self.waiting.popleft()
            self._take(shared)
            turn.set_result(None)


class KeyedLocks(Generic[K]):
    """One holder at a time per key, or several sharing it, in this process."""

    def __init__(self) -> None:
        self._held: dict[K, _Shared] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: K, *, shared: bool = False) -> AsyncIterator[None]:
        """`key` alone, or `shared` with other holders that share it (none holds it alone)."""
        lock = self._held.get(key)
        if lock is None:
            lock = self._held[key] = _Shared()
        lock.users += 1
        try:
            await lock.acquire(shared)
            try:
                yield
            finally:
                lock.release(shared)
        finally:
            lock.users -= 1
            if lock.users == 0:
                del self._held[key]

    def __len__(self) -> int:
        """How many keys are held or awaited now."""
        return len(self._held)


def project_place(directory: Path) -> str:
    """The key of a project's place (its folder where it lies now): every write in the project
    shares it, a rename or a delete of the project holds it alone. Apart from the files' keys
    (their absolute paths) and git's (`git:` and the folder), so git's writes, long as they may
    be, never make a file write wait."""
    return f"project:{directory}"


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
    """One holder at a time per key, or several sharing it, across every replica that shares
    the volume: this process's lock first (its own callers queue in order, without polling),
    then a `flock` on the key's stripe file under `folder` (exclusive, or shared), which
    another process holds until its write is done.

    `folder` lies on the shared volume beside the users' folders, never inside one (a user's
    sandbox could otherwise hold a lock file and stall everyone's writes). Without a folder
    (tools, tests of other rules), the locks hold in this process only."""

    def __init__(self, folder: Path | None) -> None:
        self._folder = folder
        self._local: KeyedLocks[str] = KeyedLocks()

    @contextlib.asynccontextmanager
    async def hold(self, *keys: str, shared: Iterable[str] = ()) -> AsyncIterator[None]:
        """All of `keys` alone, and `shared` shared with other holders that share them (a key
        in both is held alone). Every holder takes locks in one order (keys sorted, then
        stripes by number, a stripe several keys share taken once, alone if any of its keys
        is), so two holders never wait for each other in a circle, in one process or across
        replicas."""
        alone = set(keys)
        sharing = set(shared) - alone
        async with contextlib.AsyncExitStack() as held:
            for key in sorted(alone | sharing):
                await held.enter_async_context(self._local.hold(key, shared=key in sharing))
            stripes_alone: dict[Path, bool] = {}  # each stripe, and whether it is held alone
            if self._folder is not None:
                for key in alone | sharing:
                    stripe = self._stripe(key)
                    stripes_alone[stripe] = stripes_alone.get(stripe, False) or key in alone
            for stripe in sorted(stripes_alone):
                descriptor = await self._acquire(stripe, exclusive=stripes_alone[stripe])
                held.callback(os.close, descriptor)  # closing the file releases its flock
            yield

    def _stripe(self, key: str) -> Path:
        assert self._folder is not None
        number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % STRIPES
        return self._folder / f"{number:04d}.lock"

    async def _acquire(self, path: Path, *, exclusive: bool) -> int:
        descriptor = _open_lock_file(path)
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        delay = RETRY_FIRST
        try:
            while True:
                try:
                    fcntl.flock(descriptor, mode | fcntl.LOCK_NB)
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
