"""The cache behaves the same on both backends (in-process and Redis), and Redis failing is a
miss, never an error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from services.runtime.cache import Cache, create_cache
from services.runtime.local_cache import InProcessCache
from services.runtime.redis_cache import RedisCache

# A cache and a way to let time pass over it (the timed_cache fixture in tests/conftest.py).
TimedCache = tuple[Cache, Callable[[float], Awaitable[None]]]


async def test_a_value_set_is_got_back_and_a_missing_key_is_none(cache: Cache) -> None:
    assert await cache.get("quote:AAPL") is None
    await cache.set("quote:AAPL", b"187.42")
    assert await cache.get("quote:AAPL") == b"187.42"
    await cache.set("quote:AAPL", b"188.00")
    assert await cache.get("quote:AAPL") == b"188.00", "a second set replaces the value"


async def test_a_value_expires_after_its_ttl(timed_cache: TimedCache) -> None:
    cache, advance = timed_cache
    await cache.set("session:s-1", b"live", ttl=0.2)
    await cache.set("session:s-2", b"live")
    assert await cache.get("session:s-1") == b"live"
    await advance(0.4)
    assert await cache.get("session:s-1") is None
    assert await cache.get("session:s-2") == b"live", "no ttl, no expiry"


async def test_delete_removes_a_value_and_a_counter(cache: Cache) -> None:
    await cache.set("k", b"v")
    await cache.incr("hits", ttl=60)
    await cache.delete("k")
    await cache.delete("hits")
    await cache.delete("never-set")
    assert await cache.get("k") is None
    assert await cache.counter("hits") == 0


async def test_incr_counts_hits_in_a_window_that_starts_at_the_first_hit(cache: Cache) -> None:
    first = await cache.incr("rl:ip", ttl=60)
    second = await cache.incr("rl:ip", ttl=60)
    third = await cache.incr("rl:ip", ttl=60)
    assert [first[0], second[0], third[0]] == [1, 2, 3]
    assert 0 < third[1] <= first[1] < 60.001
    assert await cache.counter("rl:ip") == 3
    assert await cache.counter("rl:other") == 0


async def test_incr_starts_a_new_window_after_the_old_one_ends(timed_cache: TimedCache) -> None:
    cache, advance = timed_cache
    for _ in range(3):
        await cache.incr("rl:ip", ttl=0.2)
    await advance(0.4)
    assert await cache.counter("rl:ip") == 0
    count, reset_after = await cache.incr("rl:ip", ttl=0.2)
    assert count == 1
    assert 0 < reset_after < 0.201


async def test_later_hits_do_not_extend_the_window(timed_cache: TimedCache) -> None:
    cache, advance = timed_cache
    await cache.incr("rl:ip", ttl=0.4)
    await advance(0.2)
    _, reset_after = await cache.incr("rl:ip", ttl=0.4)
    assert reset_after <= 0.25, "the window runs from the first hit"


async def test_a_published_message_reaches_every_subscriber(cache: Cache) -> None:
    received: dict[str, list[bytes]] = {"one": [], "two": []}

    async def listen(name: str, stream: AsyncIterator[bytes]) -> None:
        async for message in stream:
            received[name].append(message)
            if message == b"last":
                return

    listeners = [asyncio.create_task(listen(name, cache.subscribe("prices"))) for name in received]
    # A subscription starts when its first message is awaited; publish until both hear.
    for _ in range(200):
        await cache.publish("prices", b"ping")
        if all(received.values()):
            break
        await asyncio.sleep(0.02)
    await cache.publish("other-channel", b"not for us")
    await cache.publish("prices", b"AAPL 187.42")
    await cache.publish("prices", b"last")
    await asyncio.wait_for(asyncio.gather(*listeners), timeout=10)
    for messages in received.values():
        assert messages[-2:] == [b"AAPL 187.42", b"last"]
        assert set(messages[:-2]) == {b"ping"}


async def test_ping_answers_true_while_the_backend_is_up(cache: Cache) -> None:
    assert await cache.ping() is True


def test_create_cache_picks_redis_only_when_a_url_is_given() -> None:
    assert isinstance(create_cache(None), InProcessCache)
    assert isinstance(create_cache(""), InProcessCache)
    assert isinstance(create_cache("redis://127.0.0.1:1/0"), RedisCache)


async def test_in_process_cache_stays_bounded_when_full_of_live_keys() -> None:
    cache = InProcessCache(max_entries=10)
    for i in range(25):
        await cache.set(f"k{i}", b"v")
    assert await cache.get("k24") == b"v", "the newest key survives"
    assert await cache.get("k0") is None, "the oldest went"
    assert sum([await cache.get(f"k{i}") is not None for i in range(25)]) <= 10


async def test_unreachable_redis_degrades_to_this_process_without_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = RedisCache("redis://127.0.0.1:1/0")
    try:
        with caplog.at_level(logging.WARNING, logger="services.runtime.cache"):
            assert await asyncio.wait_for(cache.get("k"), timeout=30) is None
            await asyncio.wait_for(cache.set("k", b"v", ttl=5), timeout=30)
            assert await asyncio.wait_for(cache.get("k"), timeout=30) == b"v"
            await asyncio.wait_for(cache.delete("k"), timeout=30)
            assert await asyncio.wait_for(cache.get("k"), timeout=30) is None
            # Counted here rather than not at all (tests/integration/test_cache_degraded.py).
            assert await asyncio.wait_for(cache.incr("rl:ip", ttl=60), timeout=30) == (1, 60)
            assert await asyncio.wait_for(cache.counter("rl:ip"), timeout=30) == 1
            await asyncio.wait_for(cache.publish("prices", b"x"), timeout=30)
            assert await asyncio.wait_for(cache.ping(), timeout=30) is False
    finally:
        await cache.close()
    failures = [r.getMessage() for r in caplog.records]
    assert "redis get failed; in-process" in failures, "a degraded cache says so in the log"
    assert "redis incr failed; counting in-process" in failures


async def test_a_subscriber_that_left_does_not_stop_a_later_one_hearing(cache: Cache) -> None:
    async def first_message(stream: AsyncIterator[bytes]) -> bytes:
        async for message in stream:
            return message
        raise AssertionError("the stream ended")

    for round_ in range(3):
        stream = cache.subscribe("trades")
        listener = asyncio.create_task(first_message(stream))
        for _ in range(200):
            await cache.publish("trades", f"round {round_}".encode())
            if listener.done():
                break
            await asyncio.sleep(0.02)
        assert await asyncio.wait_for(listener, timeout=10) == f"round {round_}".encode()
        await stream.aclose()  # type: ignore[attr-defined]


async def test_spending_is_refused_past_the_ceiling_and_refunds_always_apply(cache: Cache) -> None:
    assert await cache.spend("tokens:u-1", 10, 100) is None, "never seeded"
    await cache.seed("tokens:u-1", 40, ttl=60)
    await cache.seed("tokens:u-1", 0, ttl=60)  # a second seed leaves the total alone
    assert await cache.spend("tokens:u-1", 50, 100) == 90
    assert await cache.spend("tokens:u-1", 20, 100) == -1, "90 + 20 is past 100"
    assert await cache.spend("tokens:u-1", 10, 100) == 100
    assert await cache.spend("tokens:u-1", -30, 100) == 70
    assert await cache.spend("tokens:u-1", 500, 2**62) == 570, "a settlement past the ceiling"


async def test_concurrent_spends_never_pass_the_ceiling_together(cache: Cache) -> None:
    await cache.seed("tokens:u-2", 0, ttl=60)
    totals = await asyncio.gather(*(cache.spend("tokens:u-2", 30, 100) for _ in range(10)))
    assert sorted(t for t in totals if t is not None and t >= 0) == [30, 60, 90]
    assert totals.count(-1) == 7
