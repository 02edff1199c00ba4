"""The quota's book shared by replicas (two `Quotas` over one folder, as two processes on one
volume): room one holds or has used is counted by the other, and a dead replica's room lapses."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.workspace.quota import LEASE, SLICE, QuotaExceeded, Quotas, Usage

LIMITS = Usage(1000, 10)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def replicas(tmp_path: Path, clock: Clock, count: int = 2) -> tuple[Path, list[Quotas]]:
    user = tmp_path / "ada"
    user.mkdir()
    shared = tmp_path / ".quota"
    return user, [Quotas(LIMITS, interval=3600, shared=shared, clock=clock) for _ in range(count)]


async def test_room_held_or_used_on_one_replica_is_counted_on_the_other(tmp_path: Path) -> None:
    user, (one, two) = replicas(tmp_path, Clock())
    assert await two.usage(user) == Usage(0, 0)  # `two` knows the user before `one` writes
    held = await one.reserve(user, size=600, files=1)
    with pytest.raises(QuotaExceeded) as refused:
        await two.reserve(user, size=600, files=1)
    assert refused.value.usage == Usage(600, 1)

    (user / "a").write_bytes(b"x" * 600)
    one.changed(user, size=600, files=1)
    await held.release()
    with pytest.raises(QuotaExceeded) as refused:
        await two.reserve(user, size=600, files=1)
    assert refused.value.usage == Usage(600, 1)  # the write itself now, not its room

    (user / "a").unlink()
    one.forget(user)
    await one.close()  # the delete is recorded
    room = await two.reserve(user, size=600, files=1)  # measured again: it fits
    await room.release()


async def test_an_upload_growing_on_one_replica_stops_where_the_other_holds_room(
    tmp_path: Path,
) -> None:
    user, (one, two) = replicas(tmp_path, Clock())
    upload = await one.reserve(user, files=1)
    await upload.grow(size=300)
    create = await two.reserve(user, size=500, files=1)
    await upload.grow(size=200)  # 1,000 of 1,000
    with pytest.raises(QuotaExceeded) as refused:
        await upload.grow(size=1)
    assert refused.value.usage == Usage(1000, 2)
    await create.release()
    await upload.grow(size=1)


async def test_the_room_of_a_replica_that_died_mid_write_lapses(tmp_path: Path) -> None:
    clock = Clock()
    user, (dead, alive, other) = replicas(tmp_path, clock, count=3)
    await dead.reserve(user, size=600, files=1)  # never released: its process was killed
    upload = await alive.reserve(user, size=100, files=1)
    with pytest.raises(QuotaExceeded):
        await other.reserve(user, size=600, files=1)

    clock.now += LEASE * 0.75
    await upload.grow(size=100)  # news from a live write renews its lease
    clock.now += LEASE * 0.75
    with pytest.raises(QuotaExceeded) as refused:
        await other.reserve(user, size=900, files=1)
    assert refused.value.usage == Usage(200, 1)  # the dead replica's 600 no longer count
    room = await other.reserve(user, size=800, files=1)
    await room.release()


async def test_bytes_taken_within_the_slack_are_checked_before_the_write_lands(
    tmp_path: Path,
) -> None:
    """An upload records its bytes a slice at a time (a step per chunk was as slow as the
    write), so another replica may take the room first: then the upload is the one refused,
    at its `settle` before its file lands, and the user never ends past the quota."""
    user = tmp_path / "ada"
    user.mkdir()
    limits = Usage(100 * SLICE, 10)
    one, two = (Quotas(limits, interval=3600, shared=tmp_path / ".quota") for _ in range(2))
    upload = await one.reserve(user, files=1)
    await upload.grow(size=1000)  # within its slack: not yet in the book
    create = await two.reserve(user, size=limits.bytes - 500, files=1)
    with pytest.raises(QuotaExceeded) as refused:
        await upload.settle()
    assert refused.value.usage == Usage(limits.bytes - 500, 2)
    await upload.release()
    await create.release()
