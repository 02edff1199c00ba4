"""A Redis cache that cannot reach Redis degrades to this process's own cache instead of
letting everything through: rate limits keep counting, values are kept (issue 15's fault: Redis
down, everything still serves and still limits). Nothing listens on the address used."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.runtime.ratelimit import Rate, RateLimiter
from services.runtime.redis_cache import RedisCache

NOTHING_LISTENS = "redis://127.0.0.1:1/0"


@pytest.fixture
async def unreachable() -> AsyncIterator[RedisCache]:
    cache = RedisCache(NOTHING_LISTENS)
    yield cache
    await cache.close()


async def test_rate_limits_keep_counting_in_process(unreachable: RedisCache) -> None:
    limiter = RateLimiter(unreachable)
    rate = Rate(limit=2, window=60.0)
    decisions = [await limiter.hit("login:203.0.113.9", rate) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert [d.remaining for d in decisions] == [1, 0, 0]
    assert 0 < decisions[-1].reset_after <= 60
    assert await limiter.peek("login:203.0.113.9", rate) is True
    await limiter.reset("login:203.0.113.9")
    assert (await limiter.hit("login:203.0.113.9", rate)).allowed is True


async def test_values_are_kept_in_process(unreachable: RedisCache) -> None:
    await unreachable.set("session:s-1", b"valid", ttl=30)
    assert await unreachable.get("session:s-1") == b"valid"
    # A budget: seeded, then spent against its ceiling (the assistant's daily tokens).
    assert await unreachable.spend("budget:u-1", 100, 1000) is None  # not seeded yet
    await unreachable.seed("budget:u-1", 500, ttl=60)
    assert await unreachable.spend("budget:u-1", 100, 1000) == 600
    assert await unreachable.spend("budget:u-1", 500, 1000) == -1  # past the ceiling
    await unreachable.delete("session:s-1")
    assert await unreachable.get("session:s-1") is None
