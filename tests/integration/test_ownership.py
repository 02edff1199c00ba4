"""Who owns what, across replicas (services/runtime/ownership.py), on both cache backends: a
replica records what it owns under its address and incarnation; its lease lapsing, or another
process taking its address, makes what it owned lost; a graceful stop gives the lease up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from services.runtime.cache import Cache
from services.runtime.errors import Unavailable
from services.runtime.local_cache import InProcessCache
from services.runtime.ownership import Owners, Ownership, advertised_address
from tests.waiting import until_async

TTL = 0.4
BEAT = 0.1
Timed = tuple[Cache, Callable[[float], Awaitable[None]]]


async def test_a_claim_is_found_with_its_owner_and_listed_per_user(timed_cache: Timed) -> None:
    cache, _ = timed_cache
    first = Ownership(cache, "terminal", ttl=TTL, beat=BEAT)
    second = Ownership(cache, "terminal", ttl=TTL, beat=BEAT)
    await first.start("10.0.0.1:4140")
    await second.start("10.0.0.2:4140")
    try:
        await first.claim("s1", "ann", {"shell": "/bin/bash"})
        await first.claim("s2", "bob", {})
        await second.claim("s3", "ann", {"cols": 80})
        reader = Owners(cache, "terminal")
        found = await reader.find("s3")
        assert found is not None
        assert (found.user, found.replica, found.facts) == ("ann", "10.0.0.2:4140", {"cols": 80})
        assert found.incarnation == second.incarnation and second.mine(found)
        assert not first.mine(found) and not await reader.lost(found)
        anns = await reader.held("ann")
        assert sorted((o.key, lost) for o, lost in anns) == [("s1", False), ("s3", False)]
        everyone = await reader.held(None)
        assert sorted(o.key for o, _ in everyone) == ["s1", "s2", "s3"]
        # Another service's records are another namespace.
        assert await Owners(cache, "workspace").find("s1") is None
        await first.forget("s1")
        assert await reader.find("s1") is None
        assert [o.key for o, _ in await reader.held("ann")] == ["s3"]
    finally:
        await first.stop()
        await second.stop()


async def test_what_a_replica_owned_is_lost_when_its_lease_lapses(timed_cache: Timed) -> None:
    cache, advance = timed_cache
    owner = Ownership(cache, "terminal", ttl=TTL, beat=BEAT)
    await owner.start("10.0.0.1:4140")
    owned = await owner.claim("s1", "ann", {})
    assert owned is not None
    reader = Owners(cache, "terminal")
    # Killed: no more beats, and no goodbye.
    assert owner._beating is not None
    owner._beating.cancel()
    assert not await reader.lost(owned)
    await advance(TTL + 0.1)
    assert await reader.lost(owned)
    assert [(o.key, lost) for o, lost in await reader.held("ann")] == [("s1", True)]
    # A survivor forgets it once its user closes it.
    survivor = Ownership(cache, "terminal", ttl=TTL, beat=BEAT)
    await survivor.release(owned)
    assert await reader.find("s1") is None and await reader.held("ann") == []


async def test_a_new_process_at_the_same_address_does_not_revive_what_the_old_one_owned(
    timed_cache: Timed,
) -> None:
    cache, _ = timed_cache
    old = Ownership(cache, "terminal", ttl=TTL, beat=BEAT)
    await old.start("10.0.0.1:4140")
    owned = await old.claim("s1", "ann", {})
    assert owned is not None
    assert old._beating is not None
    old._beating.cancel()
    new = Ownership(cache, "terminal", ttl=TTL, beat=BEAT)
    await new.start("10.0.0.1:4140")
    try:
        assert await Owners(cache, "terminal").lost(owned)
        await new.claim("s2", "ann", {})
        held = {o.key: lost for o, lost in await new.held("ann")}
        assert held == {"s1": True, "s2": False}
    finally:
        await new.stop()


async def test_a_graceful_stop_gives_the_lease_up_at_once(timed_cache: Timed) -> None:
    cache, _ = timed_cache
    owner = Ownership(cache, "terminal", ttl=30.0, beat=BEAT)
    await owner.start("10.0.0.1:4140")
    owned = await owner.claim("s1", "ann", {})
    assert owned is not None
    await owner.stop()
    assert await Owners(cache, "terminal").lost(owned)
    assert await Owners(cache, "terminal").wait_lost(owned, within=0.0)


async def test_the_lease_is_renewed_while_the_replica_lives() -> None:
    cache = InProcessCache()
    owner = Ownership(cache, "terminal", ttl=0.3, beat=0.05)
    await owner.start("10.0.0.1:4140")
    try:
        owned = await owner.claim("s1", "ann", {})
        assert owned is not None
        await asyncio.sleep(0.6)  # two leases long: only the beats keep it
        assert not await owner.lost(owned)
        assert await owner.replicas() == ["10.0.0.1:4140"]
    finally:
        await owner.stop()


def test_nothing_is_claimed_before_the_replica_knows_its_address() -> None:
    owner = Ownership(InProcessCache(), "terminal")
    assert asyncio.run(owner.claim("s1", "ann", {})) is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1:4140"),
        ("::1", "[::1]:4140"),
        ("terminal-0.svc", "terminal-0.svc:4140"),
    ],
)
def test_an_advertised_address_names_the_host_it_was_bound_to(host: str, expected: str) -> None:
    assert advertised_address(host, 4140) == expected


def test_a_wildcard_host_advertises_this_machines_address() -> None:
    address = advertised_address("0.0.0.0", 4140)  # noqa: S104 - the wildcard is the point
    host = address.rpartition(":")[0]
    assert host not in ("0.0.0.0", "") and address.endswith(":4140")  # noqa: S104


async def test_records_lost_by_the_cache_are_written_again_within_a_beat(
    timed_cache: Timed,
) -> None:
    cache, _ = timed_cache
    owner = Ownership(cache, "terminal", ttl=TTL, beat=BEAT)
    await owner.start("10.0.0.1:4140")
    try:
        await owner.claim("s1", "ann", {"cols": 80})
        await owner.update("s1", "ann", {"cols": 80, "state": "exited"})
        await owner.claim("s2", "bob", {})
        await owner.forget("s2")
        # Redis restarted empty: the records and the index are gone.
        for key in ("owned:s1", "held:10.0.0.1:4140"):
            await cache.delete(f"owners:terminal:{key}")
        assert await owner.find("s1") is None

        async def written_again() -> bool:
            # A beat writes the records first, then the index that lists them.
            return [o.key for o, _ in await owner.held(None)] == ["s1"]

        await until_async(written_again, "the records written again by a beat")
        found = await owner.find("s1")
        assert found is not None and found.facts == {"cols": 80, "state": "exited"}
        assert [(o.key, lost) for o, lost in await owner.held(None)] == [("s1", False)]
        assert await owner.reachable()
    finally:
        await owner.stop()


async def test_replicas_gone_with_nothing_left_are_taken_off_the_list(timed_cache: Timed) -> None:
    cache, advance = timed_cache
    survivor = Ownership(cache, "terminal", ttl=TTL, beat=BEAT)
    dead = Ownership(cache, "terminal", ttl=TTL, beat=BEAT)
    emptied = Ownership(cache, "terminal", ttl=TTL, beat=BEAT)
    await survivor.start("10.0.0.1:4140")
    await dead.start("10.0.0.2:4140")
    await emptied.start("10.0.0.3:4140")
    try:
        lost = await dead.claim("s1", "ann", {})
        assert lost is not None
        await emptied.claim("s2", "ann", {})
        await emptied.forget("s2")
        for replica in (dead, emptied):
            assert replica._beating is not None
            replica._beating.cancel()
        assert await survivor.prune() == []  # both still hold their leases
        if isinstance(cache, InProcessCache):
            await advance(TTL + 0.1)
        else:
            await asyncio.sleep(TTL + 0.1)  # the survivor keeps beating meanwhile
        await survivor._renew()
        assert await survivor.prune() == ["10.0.0.3:4140"]
        assert await survivor.replicas() == ["10.0.0.1:4140", "10.0.0.2:4140"]
        # What was lost stays listed until its user closes it.
        await survivor.release(lost)
        assert await survivor.prune() == ["10.0.0.2:4140"]
        assert await survivor.replicas() == ["10.0.0.1:4140"]
    finally:
        await survivor.stop()


async def test_an_exclusive_section_has_one_holder_among_replicas(timed_cache: Timed) -> None:
    cache, _ = timed_cache
    first = Ownership(cache, "terminal", ttl=TTL, beat=BEAT)
    second = Ownership(cache, "terminal", ttl=TTL, beat=BEAT)
    inside: list[str] = []
    most = 0

    async def section(owner: Ownership, name: str) -> None:
        nonlocal most
        async with owner.exclusive("create:ann"):
            inside.append(name)
            most = max(most, len(inside))
            await asyncio.sleep(0.02)  # a create's work, while the others wait
            inside.remove(name)

    await asyncio.gather(*(section(o, f"{i}") for i, o in enumerate([first, second] * 3)))
    assert most == 1
    # Another name is another section; one held past `within` is refused, not waited for.
    async with first.exclusive("create:ann"):
        async with second.exclusive("create:bob"):
            pass
        with pytest.raises(Unavailable, match="create:ann is busy"):
            async with second.exclusive("create:ann", within=0.05):
                pass
    async with second.exclusive("create:ann", within=0.05):  # free again once left
        pass
