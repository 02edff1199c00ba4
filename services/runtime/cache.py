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
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from services.runtime.clock import Monotonic, monotonic
from services.runtime.redis_url import split_namespace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lease:
    """A lease as `Cache.lead` granted it: its key, holder, term and duration."""

    key: str
    holder: str
    term: int
    ttl: float

    @property
    def value(self) -> str:
        return f"{self.holder}:{self.term}"


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


# KEYS[1]: the total; ARGV: amount, ceiling. nil: absent; -1: refused; else the new total.
_SPEND = """
local total = redis.call('GET', KEYS[1])
if not total then return nil end
local amount = tonumber(ARGV[1])
if amount > 0 and tonumber(total) + amount > tonumber(ARGV[2]) then return -1 end
return redis.call('INCRBY', KEYS[1], amount)
"""


# KEYS: the lease, its term counter; ARGV: holder, ttl in ms, the lowest term to grant.
# The term counter never goes below what a candidate has seen, even if Redis lost it.
_LEAD = """
local current = redis.call('GET', KEYS[1])
if current then
  local at = string.find(current, ':[^:]*$')
  local term = tonumber(string.sub(current, at + 1))
  if string.sub(current, 1, at - 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return term
  end
  return -term
end
local term = redis.call('INCR', KEYS[2])
if term <= tonumber(ARGV[3]) then
  term = tonumber(ARGV[3]) + 1
  redis.call('SET', KEYS[2], term)
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. term, 'PX', ARGV[2])
return term
"""

# KEYS: the lease, the state, the channel; ARGV: the lease's value, ttl in ms, state, message.
_PUBLISH_HELD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('PUBLISH', KEYS[3], ARGV[4])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisCache:
    """Redis behind the same interface. While Redis cannot be reached, values and counters
    degrade to an in-process cache of this replica (rate limits keep counting, per replica,
    instead of letting everything through) and come back to Redis with it."""

    def __init__(self, url: str, *, prefix: str = "sf:") -> None:
        url, namespace = split_namespace(url)
        self._client = redis_asyncio.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=15
        )
        self._prefix = f"{namespace}:{prefix}" if namespace else prefix
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

    # Leases have no in-process fallback: a replica that cannot reach Redis cannot know who
    # holds one, and says so (None) instead of pretending.

    async def lead(self, key: str, holder: str, ttl: float, floor: int) -> int | None:
        keys = (self._prefix + key, self._prefix + key + ":term")
        try:
            term = await self._client.eval(_LEAD, 2, *keys, holder, int(ttl * 1000), floor)
        except (RedisError, OSError) as error:
            log.warning("redis lease failed", extra={"error": str(error)})
            return None
        return int(term)

    async def publish_held(
        self, lease: Lease, state_key: str, state: bytes, channel: str, message: bytes
    ) -> bool | None:
        keys = (self._prefix + lease.key, self._prefix + state_key, self._prefix + channel)
        try:
            done = await self._client.eval(
                _PUBLISH_HELD, 3, *keys, lease.value, int(lease.ttl * 1000), state, message
            )
        except (RedisError, OSError) as error:
            log.warning("redis publish under lease failed", extra={"error": str(error)})
            return None
        return bool(done)

    async def release(self, lease: Lease) -> None:
        try:
            await self._client.eval(_RELEASE, 1, self._prefix + lease.key, lease.value)
        except (RedisError, OSError) as error:
            log.warning("redis lease release failed", extra={"error": str(error)})

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
