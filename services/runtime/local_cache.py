"""The in-process cache: what every process uses without REDIS_URL, and what a Redis-backed
cache falls back to while Redis cannot be reached."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator

from services.runtime.clock import Monotonic, monotonic
from services.runtime.lease import Lease


class InProcessCache:
    """A dict with expiry times; pub/sub reaches subscribers in this process only."""

    def __init__(self, *, max_entries: int = 100_000, clock: Monotonic = monotonic) -> None:
        # The clock is injected so tests move time instead of sleeping through it.
        self._clock = clock
        self._values: dict[str, tuple[bytes, float | None]] = {}
        self._counters: dict[str, tuple[int, float]] = {}
        self._subscribers: defaultdict[str, set[asyncio.Queue[bytes]]] = defaultdict(set)
        self._max_entries = max_entries
        self._leases: dict[str, tuple[str, int, float]] = {}  # key -> (holder, term, expires)
        self._terms: dict[str, int] = {}  # key -> the last term granted

    async def get(self, key: str) -> bytes | None:
        found = self._values.get(key)
        if found is None:
            return None
        value, expires = found
        if expires is not None and expires <= self._clock():
            del self._values[key]
            return None
        return value

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        if len(self._values) >= self._max_entries:
            self._evict()
        self._values[key] = (value, self._clock() + ttl if ttl else None)

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)
        self._counters.pop(key, None)

    async def incr(self, key: str, ttl: float) -> tuple[int, float]:
        now = self._clock()
        count, resets = self._counters.get(key, (0, 0.0))
        if resets <= now:
            count, resets = 0, now + ttl
            if len(self._counters) >= self._max_entries:
                self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
        self._counters[key] = (count + 1, resets)
        return count + 1, resets - now

    async def counter(self, key: str) -> int:
        count, resets = self._counters.get(key, (0, 0.0))
        return count if resets > self._clock() else 0

    async def seed(self, key: str, value: int, ttl: float) -> None:
        if await self.get(key) is None:
            await self.set(key, str(value).encode(), ttl)

    async def spend(self, key: str, amount: int, ceiling: int) -> int | None:
        # No await between the read and the write: atomic on the event loop.
        found = self._values.get(key)
        if found is None or (found[1] is not None and found[1] <= self._clock()):
            return None
        total = int(found[0]) + amount
        if amount > 0 and total > ceiling:
            return -1
        self._values[key] = (str(total).encode(), found[1])
        return total

    async def publish(self, channel: str, message: bytes) -> None:
        for queue in list(self._subscribers.get(channel, ())):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(message)

    async def subscribe(self, channel: str) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)
        self._subscribers[channel].add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            listeners = self._subscribers.get(channel)
            if listeners is not None:
                listeners.discard(queue)
                if not listeners:  # channels are often per user or portfolio: do not keep them
                    del self._subscribers[channel]

    async def ping(self) -> bool:
        return True

    async def lead(self, key: str, holder: str, ttl: float, floor: int) -> int | None:
        now = self._clock()
        held = self._leases.get(key)
        if held is not None and held[2] > now:
            if held[0] != holder:
                return -held[1]
            self._leases[key] = (holder, held[1], now + ttl)
            return held[1]
        self._terms[key] = term = max(self._terms.get(key, 0), floor) + 1
        self._leases[key] = (holder, term, now + ttl)
        return term

    async def publish_held(
        self, lease: Lease, state_key: str, state: bytes, channel: str, message: bytes
    ) -> bool | None:
        held = self._leases.get(lease.key)
        now = self._clock()
        if held is None or held[2] <= now or (held[0], held[1]) != (lease.holder, lease.term):
            return False
        self._leases[lease.key] = (lease.holder, lease.term, now + lease.ttl)
        await self.set(state_key, state)
        await self.publish(channel, message)
        return True

    async def release(self, lease: Lease) -> None:
        held = self._leases.get(lease.key)
        if held is not None and (held[0], held[1]) == (lease.holder, lease.term):
            del self._leases[lease.key]

    async def close(self) -> None:
        self._values.clear()
        self._counters.clear()

    def _evict(self) -> None:
        now = self._clock()
        self._values = {k: v for k, v in self._values.items() if v[1] is None or v[1] > now}
        if len(self._values) >= self._max_entries:
            # Still full of live keys: drop the oldest half rather than grow without bound.
            keep = list(self._values.items())[len(self._values) // 2 :]
            self._values = dict(keep)
