"""The cache on Redis (REDIS_URL), behind services/runtime/cache.py's interface. Imported only
when REDIS_URL is set: the Redis client (with the OpenTelemetry SDK it loads) costs a process
about 8 MB it need not carry without one."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from services.runtime.lease import Lease
from services.runtime.local_cache import InProcessCache
from services.runtime.redis_url import split_namespace

log = logging.getLogger(__name__)


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
