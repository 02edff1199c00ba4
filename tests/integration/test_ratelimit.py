"""Rate limits over the cache, on both backends: `limit` hits pass, the next is refused until
the window resets."""

from __future__ import annotations

import asyncio
import time

from services.runtime.cache import Cache
from services.runtime.ratelimit import RateLimiter, parse_rate


async def test_limit_hits_pass_then_the_next_is_refused_until_the_window_resets(
    cache: Cache,
) -> None:
    limiter = RateLimiter(cache)
    rate = parse_rate("RATE_LIMIT_AUTH", "3/minute")
    decisions = [await limiter.hit("login:203.0.113.9", rate) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.remaining for d in decisions] == [2, 1, 0]
    assert {d.limit for d in decisions} == {3}

    refused = await limiter.hit("login:203.0.113.9", rate)
    assert refused.allowed is False
    assert refused.remaining == 0
    assert 0 < refused.reset_after <= 60.001
    assert await limiter.peek("login:203.0.113.9", rate) is True

    other = await limiter.hit("login:198.51.100.1", rate)
    assert (other.allowed, other.remaining) == (True, 2), "each key has its own window"


async def test_a_new_window_allows_again(cache: Cache) -> None:
    limiter = RateLimiter(cache)
    rate = parse_rate("RATE_LIMIT_API", "1/second")
    assert (await limiter.hit("u-1", rate)).allowed
    assert not (await limiter.hit("u-1", rate)).allowed
    deadline = time.monotonic() + 3.0
    while await limiter.peek("u-1", rate):
        assert time.monotonic() < deadline, "the one-second window never reset"
        await asyncio.sleep(0.05)
    assert (await limiter.hit("u-1", rate)).allowed


async def test_reset_clears_a_key(cache: Cache) -> None:
    limiter = RateLimiter(cache)
    rate = parse_rate("LOGIN_FAILURES_PER_ACCOUNT", "2/15minutes")
    for _ in range(3):
        await limiter.hit("ada@example.com", rate)
    assert await limiter.peek("ada@example.com", rate) is True
    await limiter.reset("ada@example.com")
    assert await limiter.peek("ada@example.com", rate) is False
    assert (await limiter.hit("ada@example.com", rate)).remaining == 1


async def test_peek_does_not_count_a_hit(cache: Cache) -> None:
    limiter = RateLimiter(cache)
    rate = parse_rate("RATE_LIMIT_AUTH", "1/minute")
    for _ in range(5):
        assert await limiter.peek("k", rate) is False
    assert (await limiter.hit("k", rate)).allowed


async def test_a_refusal_is_told_without_counting_while_there_is_room(cache: Cache) -> None:
    """A budget spent by successes alone: asked before each try, counted after a success."""
    limiter = RateLimiter(cache)
    rate = parse_rate("LOGINS_PER_ACCOUNT", "2/minute")
    for _ in range(5):
        assert await limiter.refusal("u-1", rate) is None
    assert await cache.counter("rl:u-1") == 0, "asking spent nothing"
    for _ in range(2):
        assert await limiter.refusal("u-1", rate) is None
        assert (await limiter.hit("u-1", rate)).allowed
    refused = await limiter.refusal("u-1", rate)
    assert refused is not None
    assert (refused.allowed, refused.limit, refused.remaining) == (False, 2, 0)
    assert 0 < refused.reset_after <= 60.001
    assert await limiter.refusal("u-2", rate) is None, "each key has its own window"
    assert await limiter.refusal("u-1", parse_rate("LOGINS_PER_ACCOUNT", "0")) is None


async def test_an_unlimited_rate_never_refuses_and_counts_nothing(cache: Cache) -> None:
    limiter = RateLimiter(cache)
    rate = parse_rate("RATE_LIMIT_API", "0")
    decisions = [await limiter.hit("u-1", rate) for _ in range(50)]
    assert all(d.allowed for d in decisions)
    assert await limiter.peek("u-1", rate) is False
    assert await cache.counter("rl:u-1") == 0


async def test_limiters_in_different_namespaces_do_not_share_counts(cache: Cache) -> None:
    auth, api = RateLimiter(cache, namespace="auth"), RateLimiter(cache, namespace="api")
    rate = parse_rate("RATE_LIMIT_AUTH", "1/minute")
    assert (await auth.hit("203.0.113.9", rate)).allowed
    assert (await api.hit("203.0.113.9", rate)).allowed
