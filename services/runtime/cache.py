"""A small cache and pub/sub interface: Redis when REDIS_URL is set (redis_cache.py),
in-process otherwise (local_cache.py).

Callers treat the cache as an accelerator, never the source of truth: when Redis fails, a read
is a miss and a write is dropped (logged), so losing Redis loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Protocol

from services.runtime.lease import Lease
from services.runtime.local_cache import InProcessCache


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def incr(self, key: str, ttl: float) -> tuple[int, float]:
        """Add one to a counter that expires `ttl` seconds after its first hit.

        Returns the new count and the seconds left before the counter resets.
        """
        ...

    async def counter(self, key: str) -> int:
        """The current count of an `incr` counter (0 when absent or expired)."""
        ...

    async def seed(self, key: str, value: int, ttl: float) -> None:
        """Start a `spend` total at `value`, expiring in `ttl` seconds, unless it exists."""
        ...

    async def spend(self, key: str, amount: int, ceiling: int) -> int | None:
        """Atomically add `amount` to a seeded total unless that takes it past `ceiling` (a
        negative amount, a refund, always applies). Returns the new total, or -1 when refused;
        None when the total is absent (never seeded, expired) or the cache failed."""
        ...

    async def publish(self, channel: str, message: bytes) -> None: ...
    def subscribe(self, channel: str) -> AsyncIterator[bytes]: ...

    # --- leases: one holder among replicas, with a fencing term -------------------------------

    async def lead(self, key: str, holder: str, ttl: float, floor: int) -> int | None:
        """Take the lease `key` for `holder` if it is free, or renew it if `holder` has it, for
        `ttl` seconds. Returns the lease's term when `holder` has it (a number that grows with
        every new holder and is above `floor`, the highest term the caller has seen), minus
        the holder's term when another has it, None when the store cannot be reached."""
        ...

    async def publish_held(
        self, lease: Lease, state_key: str, state: bytes, channel: str, message: bytes
    ) -> bool | None:
        """Only while `lease` is still held: renew it, store `state` and publish `message`,
        at once. False: the lease is lost (the caller must stop acting as holder); None: the
        store cannot be reached."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give the lease up, if it is still held."""
        ...

    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


def create_cache(redis_url: str | None, *, prefix: str = "sf:") -> Cache:
    if redis_url:
        from services.runtime.redis_cache import RedisCache  # only with Redis: see its module

        return RedisCache(redis_url, prefix=prefix)
    return InProcessCache()


# Starts every probe, so a subscriber tells any probe (its own or another's) from a message.
PROBE = b"\x00probe:"


async def subscribe_live(
    cache: Cache, channel: str, live: asyncio.Event, within: float
) -> AsyncGenerator[bytes, None]:
    """`cache.subscribe(channel)` that sets `live` once the subscription receives.

    A subscription starts asynchronously (Redis confirms it later), and what is published
    before then is not received: a probe is published to the channel until it comes back (for
    `within` seconds at most), so whoever waits for `live` misses nothing sent after. Probes
    are not passed on.
    """
    probe = PROBE + os.urandom(8)

    async def announce() -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while not live.is_set():
                    await cache.publish(channel, probe)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(live.wait(), 0.05)

    announcing = asyncio.get_running_loop().create_task(announce())
    try:
        async for message in cache.subscribe(channel):
            if message == probe:
                live.set()
            elif not message.startswith(PROBE):
                yield message
    finally:
        announcing.cancel()
