"""A small cache and pub/sub interface: Redis when REDIS_URL is set, in-process otherwise.

Callers treat the cache as an accelerator, never the source of truth: when Redis fails, a read
is a miss and a write is dropped (logged), so losing Redis loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Protocol

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from services.runtime.clock import Monotonic, monotonic

log = logging.getLogger(__name__)


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
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


class InProcessCache:
    """A dict with expiry times; pub/sub reaches subscribers in this process only."""

    def __init__(self, *, max_entries: int = 100_000, clock: Monotonic = monotonic) -> None:
        # The clock is injected so tests move time instead of sleeping through it.
        self._clock = clock
        self._values: dict[str, tuple[bytes, float | None]] = {}
        self._counters: dict[str, tuple[int, float]] = {}
        self._subscribers: defaultdict[str, set[asyncio.Queue[bytes]]] = defaultdict(set)
        self._max_entries = max_entries

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


# KEYS[1]: the total; ARGV: amount, ceiling. nil: absent; -1: refused; else the new total.
_SPEND = """
local total = redis.call('GET', KEYS[1])
if not total then return nil end
local amount = tonumber(ARGV[1])
if amount > 0 and tonumber(total) + amount > tonumber(ARGV[2]) then return -1 end
return redis.call('INCRBY', KEYS[1], amount)
"""


class RedisCache:
    """Redis behind the same interface. While Redis cannot be reached, values and counters
    degrade to an in-process cache of this replica (rate limits keep counting, per replica,
    instead of letting everything through) and come back to Redis with it."""

    def __init__(self, url: str, *, prefix: str = "sf:") -> None:
        self._client = redis_asyncio.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=15
        )
        self._prefix = prefix
        self._local = InProcessCache(max_entries=10_000)

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._client.get(self._prefix + key)
        except (RedisError, OSError) as error:
            log.warning("redis get failed; in-process", extra={"error": str(error)})
            return await self._local.get(key)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        try:
            await self._client.set(self._prefix + key, value, px=int(ttl * 1000) if ttl else None)
        except (RedisError, OSError) as error:
            log.warning("redis set failed; in-process", extra={"error": str(error)})
            await self._local.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        await self._local.delete(key)
        try:
            await self._client.delete(self._prefix + key)
        except (RedisError, OSError) as error:
            log.warning("redis delete failed", extra={"error": str(error)})

    async def incr(self, key: str, ttl: float) -> tuple[int, float]:
        name = self._prefix + key
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.incr(name)
                # NX: only the first hit of a window starts its clock.
                pipe.pexpire(name, int(ttl * 1000), nx=True)
                pipe.pttl(name)
                count, _, left_ms = await pipe.execute()
        except (RedisError, OSError) as error:
            log.warning("redis incr failed; counting in-process", extra={"error": str(error)})
            return await self._local.incr(key, ttl)
        return int(count), max(0.0, int(left_ms) / 1000)

    async def counter(self, key: str) -> int:
        try:
            raw = await self._client.get(self._prefix + key)
        except (RedisError, OSError) as error:
            log.warning("redis get failed; in-process", extra={"error": str(error)})
            return await self._local.counter(key)
        return int(raw) if raw is not None else 0

    async def seed(self, key: str, value: int, ttl: float) -> None:
        try:
            await self._client.set(self._prefix + key, value, px=int(ttl * 1000), nx=True)
        except (RedisError, OSError) as error:
            log.warning("redis seed failed; in-process", extra={"error": str(error)})
            await self._local.seed(key, value, ttl)

    async def spend(self, key: str, amount: int, ceiling: int) -> int | None:
        try:
            result = await self._client.eval(_SPEND, 1, self._prefix + key, amount, ceiling)
        except (RedisError, OSError) as error:
            log.warning("redis spend failed; in-process", extra={"error": str(error)})
            return await self._local.spend(key, amount, ceiling)
        return None if result is None else int(result)

    async def publish(self, channel: str, message: bytes) -> None:
        try:
            await self._client.publish(self._prefix + channel, message)
        except (RedisError, OSError) as error:
            log.warning("redis publish failed", extra={"error": str(error)})

    async def subscribe(self, channel: str) -> AsyncIterator[bytes]:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._prefix + channel)
        try:
            async for message in pubsub.listen():
                data = message.get("data")
                if isinstance(data, bytes):
                    yield data
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._client.aclose()


def create_cache(redis_url: str | None, *, prefix: str = "sf:") -> Cache:
    if redis_url:
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
