"""One market for a deployment (services/portfolio/shared_market.py): replicas sharing a cache,
in-process and on real Redis, serve the same prices in the same numbered steps; one leads; a
new leader continues the count; a deposed leader is fenced off; a gap becomes a resync."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import pytest

from services.portfolio.market_data import Quote, TickBatch, TickStream
from services.portfolio.mock_market import MockMarket
from services.portfolio.shared_market import STATE_KEY, SharedMarket, Step
from services.runtime.cache import Cache
from services.runtime.local_cache import InProcessCache
from services.runtime.redis_cache import RedisCache
from tests.waiting import until_async

TICK = 0.02  # seconds per simulated step
LEASE = 0.6
WITHIN = 10.0

Replicas = Callable[[int], contextlib.AbstractAsyncContextManager[list[SharedMarket]]]


@pytest.fixture(params=["inprocess", "redis"])
def replicas(request: pytest.FixtureRequest) -> Replicas:
    """`n` replicas of the market, each with its own simulated source (same seed) and its own
    connection to one shared store."""
    shared = InProcessCache() if request.param == "inprocess" else None
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""

    @contextlib.asynccontextmanager
    async def start(n: int) -> AsyncIterator[list[SharedMarket]]:
        caches: list[Cache] = [shared or RedisCache(url, prefix="sftest:") for _ in range(n)]
        markets = [
            SharedMarket(MockMarket(seed=7, interval=TICK), cache, lease=LEASE) for cache in caches
        ]
        try:
            for market in markets:
                await market.start()
            yield markets
        finally:
            for market in markets:
                await market.close()
            for cache in {id(c): c for c in caches}.values():
                await cache.close()

    return start


async def eventually(check: Callable[[], bool], what: str, within: float = WITHIN) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def read_batches(stream: TickStream, count: int) -> list[TickBatch]:
    batches: list[TickBatch] = []
    async with asyncio.timeout(WITHIN):
        while len(batches) < count:
            batches.append(await stream.batch())
    return batches


async def prices(market: SharedMarket) -> dict[str, Decimal]:
    found = await market.search("", limit=100)
    return {s.symbol: (await market.quote(s.symbol)).price for s in found}


async def test_one_replica_leads_and_every_replica_serves_the_same_numbered_steps(
    replicas: Replicas,
) -> None:
    async with replicas(2) as (first, second):
        assert [first.leading, second.leading].count(True) == 1
        streams = [first.ticks(), second.ticks()]
        seen = await asyncio.gather(*(read_batches(stream, 20) for stream in streams))
        # The same steps, in order, with the same quotes, on both replicas.
        by_seq = [{b.seq: b.quotes for b in batches} for batches in seen]
        common = sorted(by_seq[0].keys() & by_seq[1].keys())
        assert len(common) >= 10
        for seq in common:
            assert by_seq[0][seq] == by_seq[1][seq]
        for batches in seen:
            # Each batch continues the last: every change after `since` up to `seq`.
            for before, after in itertools.pairwise(batches):
                assert after.since == before.seq
                assert after.seq > after.since
        # Whoever answers, one price: pause the walk and compare every symbol.
        leader = first if first.leading else second
        await leader._source.pause()
        await asyncio.sleep(TICK * 5)
        await eventually(lambda: first.seq == second.seq, "both replicas at one step")
        assert await prices(first) == await prices(second)
        assert (await prices(first)) != {}


async def test_a_new_leader_continues_the_count_and_the_prices(replicas: Replicas) -> None:
    async with replicas(2) as (first, second):
        leader, follower = (first, second) if first.leading else (second, first)
        stream = follower.ticks()
        await read_batches(stream, 5)
        term = leader.term
        await leader.close()  # gives the lease up: the follower takes over at its next round
        await eventually(lambda: follower.leading, "the follower leading", within=LEASE * 3)
        after = await read_batches(stream, 5)
        assert follower.term > term
        # No step lost across the change of leader: the count goes on from where it was.
        assert all(b.since + 1 <= b.seq for b in after)
        for before, next_batch in itertools.pairwise(after):
            assert next_batch.since == before.seq
        assert not any(b.resync for b in after)


async def test_a_leader_that_stops_renewing_is_replaced_within_the_lease(
    replicas: Replicas,
) -> None:
    async with replicas(2) as (first, second):
        leader, follower = (first, second) if first.leading else (second, first)
        # A hung leader: its lease rounds stop, its walk too, nothing is released.
        for task in leader._tasks:
            task.cancel()
        await leader._source.pause()
        loop = asyncio.get_running_loop()
        stopped = loop.time()
        await eventually(lambda: follower.leading, "a new leader", within=LEASE * 4)
        assert loop.time() - stopped < LEASE + LEASE / 3 + 1.0
        seq = follower.seq
        await eventually(lambda: follower.seq > seq + 3, "steps from the new leader")


async def test_a_deposed_leader_can_no_longer_publish_and_its_old_steps_are_ignored(
    replicas: Replicas,
) -> None:
    async with replicas(2) as (first, second):
        leader, follower = (first, second) if first.leading else (second, first)
        old_term = leader.term
        await eventually(lambda: follower.seq >= 3, "a few steps")
        # The leader stalls (a long pause): its lease runs out and the follower takes over.
        for task in leader._tasks:
            task.cancel()
        await leader._source.pause()
        # The lease runs out after LEASE; the follower's next try may come a renewal later on
        # a loaded machine.
        await eventually(lambda: follower.leading, "the follower leading", within=LEASE * 15)
        assert follower.term > old_term
        seq = follower.seq
        await eventually(lambda: follower.seq > seq, "a step of the new leader")
        await follower._source.pause()
        await asyncio.sleep(TICK * 5)
        applied = follower.seq
        stored = await follower._cache.get(STATE_KEY)
        # Back from its pause, the old leader's next step is refused by the store: it steps
        # down, and neither the stored market nor the follower moves.
        await leader._source.search("", limit=1)
        await leader._publish([])
        assert not leader.leading
        assert await follower._cache.get(STATE_KEY) == stored
        # A step of the old term arriving late is fenced off.
        await follower._received(Step(old_term, applied + 1, ()).encode())
        assert follower.seq == applied
        assert Step.decode(stored or b"").term == follower.term


async def test_a_gap_in_the_steps_is_handed_on_as_a_resync_of_the_whole_market(
    replicas: Replicas,
) -> None:
    async with replicas(2) as (first, second):
        leader, follower = (first, second) if first.leading else (second, first)
        await eventually(lambda: follower.seq >= 3, "a few steps")
        stream = follower.ticks()
        # Resubscribed in good time (nothing missed): nothing is reloaded or handed on. The walk
        # paused meanwhile: a step stored but still on its way to the follower is one missed.
        await leader._source.pause()

        async def nothing_reloaded() -> bool:
            before = follower.resyncs
            stored = await follower._stored()
            if stored is None or (stored.term, stored.seq) != follower._at:
                return False  # a step on its way: not in good time yet
            await follower._resync()
            await leader._resync()
            return (follower.resyncs, leader.resyncs) == (before, 0)

        await until_async(nothing_reloaded, "a resubscription that reloads nothing")
        resyncs = follower.resyncs
        await leader._source.start()
        # The follower stops hearing steps (its subscription is gone) while the market moves.
        follower._tasks[0].cancel()
        behind = follower.seq
        await eventually(lambda: leader.seq > behind + 3, "the market moving on")
        await leader._source.pause()
        await asyncio.sleep(TICK * 3)
        # The next step it hears skips numbers: it reloads the stored market.
        await follower._received(Step(leader.term, leader.seq, ()).encode())
        batches = await read_batches(stream, 1)
        while not batches[-1].resync:
            batches += await read_batches(stream, 1)
        resync = batches[-1]
        assert resync.seq == leader.seq == follower.seq
        # The whole market, as stored: every symbol's latest quote, the leader's prices.
        assert {q.symbol for q in resync.quotes} == set(await prices(follower))
        assert await prices(follower) == await prices(leader)
        assert follower.resyncs == resyncs + 1


async def test_alone_without_a_shared_store_the_market_leads_itself() -> None:
    market = SharedMarket(MockMarket(seed=1, interval=TICK), InProcessCache())
    await market.start()
    try:
        assert market.leading
        batches = await read_batches(market.ticks(), 3)
        assert [b.seq for b in batches] == sorted(b.seq for b in batches)
        assert batches[-1].seq >= 3
    finally:
        await market.close()


class Asked(MockMarket):
    """The simulated market, remembering which symbols it was asked to quote."""

    def __init__(self) -> None:
        super().__init__(seed=7, interval=TICK)
        self.asked: list[str] = []

    async def quote(self, symbol: str) -> Quote:
        self.asked.append(symbol)
        return await super().quote(symbol)


async def test_what_a_follower_is_asked_reaches_the_leaders_source_once_a_minute() -> None:
    cache = InProcessCache()
    sources = [Asked(), Asked()]
    markets = [SharedMarket(source, cache, lease=LEASE) for source in sources]
    try:
        for market in markets:
            await market.start()
        leader = 0 if markets[0].leading else 1
        follower = 1 - leader
        await markets[follower].quote("nvda")
        await markets[follower].quote("NVDA")
        await eventually(lambda: "NVDA" in sources[leader].asked, "the leader told of NVDA")
        await asyncio.sleep(0.1)
        assert sources[leader].asked == ["NVDA"]
        assert sources[follower].asked == ["nvda", "NVDA"]
    finally:
        for market in markets:
            await market.close()
