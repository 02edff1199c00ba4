"""Locks by key (a file's path, a user's id): each lives only while someone holds or awaits it,
so a long-running service keeps none for keys it no longer works on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
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
