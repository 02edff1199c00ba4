"""subscribe_live on both backends: once `live` is set, nothing published after is missed,
and probes (its own or another subscriber's) are never passed on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

from services.runtime.cache import PROBE, Cache, subscribe_live
from services.runtime.redis_cache import RedisCache


async def test_a_live_subscription_misses_nothing_published_after_and_hides_probes(
    cache: Cache,
) -> None:
    live, both = asyncio.Event(), asyncio.Event()
    received: list[bytes] = []

    async def listen() -> None:
        async for message in subscribe_live(cache, "room:1", live, within=5.0):
            received.append(message)
            if len(received) == 2:
                both.set()

    listener = asyncio.create_task(listen())
    try:
        async with asyncio.timeout(5):
            await live.wait()
            await cache.publish("room:1", PROBE + b"another subscriber's")
            await cache.publish("room:1", b"first")
            await cache.publish("room:1", b"second")
            await both.wait()
        assert received == [b"first", b"second"]
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)


async def test_probing_stops_after_the_wait_and_live_stays_unset(cache: Cache) -> None:
    probes: list[bytes] = []

    class Deaf:
        """Probes go nowhere: the subscription never hears one."""

        async def publish(self, channel: str, message: bytes) -> None:
            probes.append(message)

        def subscribe(self, channel: str) -> AsyncIterator[bytes]:
            return cache.subscribe(channel)

    live = asyncio.Event()
    messages = subscribe_live(cast(Cache, Deaf()), "room:2", live, within=0.2)

    async def first() -> bytes:
        return await anext(messages)

    listener = asyncio.create_task(first())
    await asyncio.sleep(0.4)
    sent = len(probes)
    await asyncio.sleep(0.2)
    assert sent > 1 and len(probes) == sent and all(p.startswith(PROBE) for p in probes)
    assert not live.is_set() and not listener.done()
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)


async def test_caches_in_other_namespaces_of_one_redis_share_no_key_and_no_channel(
    redis_url: str,
) -> None:
    base = redis_url.partition("?")[0]
    ours, theirs = (RedisCache(f"{base}?namespace={n}", prefix="sf:") for n in ("ours", "theirs"))
    live, heard = asyncio.Event(), asyncio.Event()
    received: list[bytes] = []

    async def listen() -> None:
        async for message in subscribe_live(ours, "events", live, within=5.0):
            received.append(message)
            heard.set()

    listener = asyncio.create_task(listen())
    try:
        await theirs.set("k", b"theirs")
        assert await ours.get("k") is None
        async with asyncio.timeout(5):
            await live.wait()
        await theirs.publish("events", b"theirs")  # the same channel name, another namespace
        await ours.publish("events", b"ours")
        async with asyncio.timeout(5):
            await heard.wait()
        await asyncio.sleep(0.2)  # anything else published would have arrived by now
        assert received == [b"ours"]
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await ours.close()
        await theirs.close()
