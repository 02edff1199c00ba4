"""The quota's bookkeeping: a change this service makes counts at once, even when a scan ran
between the moment the change was checked and the moment it landed; and room taken ahead is
given back. On a migrated SQLite database (the state every replica shares)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from services.runtime.db import Database
from services.workspace import quota
from services.workspace.orm import quota_changes, quota_reservations
from services.workspace.quota import CHANGES_KEPT, QuotaExceeded, Quotas, Usage
from tests.conftest import migrated_sqlite

MakeQuotas = Callable[..., Quotas]


@pytest.fixture
def workspace_db(tmp_path: Path) -> str:
    return migrated_sqlite("workspace", tmp_path / "workspace.db")


@pytest.fixture
async def make_quotas(workspace_db: str) -> AsyncIterator[MakeQuotas]:
    """`make_quotas(limits, interval=...)`: quotas on one database for the test."""
    db = Database(workspace_db)

    def make(limits: Usage, *, interval: float, **options: Any) -> Quotas:
        return Quotas(db, limits, interval=interval, **options)

    try:
        yield make
    finally:
        await db.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    made = tmp_path / "user-1"
    made.mkdir()
    return made


@pytest.fixture
def paused_scans(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Scans that, once begun (the first event set), wait for the second to measure."""
    begun, go = threading.Event(), threading.Event()
    measure = quota.measure

    def paused(where: Path) -> Usage:
        begun.set()
        assert go.wait(10)
        return measure(where)

    monkeypatch.setattr(quota, "measure", paused)
    return begun, go


async def test_a_change_checked_then_made_counts_until_the_next_scan(
    make_quotas: MakeQuotas, folder: Path
) -> None:
    quotas = make_quotas(Usage(1000, 10), interval=3600)
    await quotas.check(folder, size=600, files=1)  # the first check measures: empty
    (folder / "a").write_bytes(b"x" * 600)
    await quotas.changed(folder, size=600, files=1)
    assert await quotas.usage(folder) == Usage(600, 1)
    with pytest.raises(QuotaExceeded) as refused:
        await quotas.check(folder, size=600, files=1)
    assert refused.value.usage == Usage(600, 1)


async def test_a_change_that_ends_while_a_scan_runs_is_not_lost(
    make_quotas: MakeQuotas, folder: Path, paused_scans: tuple[threading.Event, threading.Event]
) -> None:
    begun, go = paused_scans
    go.set()
    quotas = make_quotas(Usage(10_000, 100), interval=3600)
    await quotas.usage(folder)
    begun.clear()
    go.clear()
    scan = asyncio.ensure_future(quotas.usage(folder, fresh=True))
    await asyncio.to_thread(begun.wait, 10)  # the scan has begun: it does not see the file
    await quotas.changed(folder, size=300, files=1)
    go.set()
    assert await scan == Usage(300, 1)  # measured, with the change it overlapped on top
    assert await quotas.usage(folder) == Usage(300, 1)
    (folder / "b").write_bytes(b"x" * 300)
    assert await quotas.usage(folder, fresh=True) == Usage(300, 1)


async def test_a_change_during_a_scan_is_never_counted_twice(
    make_quotas: MakeQuotas, folder: Path, paused_scans: tuple[threading.Event, threading.Event]
) -> None:
    begun, go = paused_scans
    go.set()
    quotas = make_quotas(Usage(10_000, 100), interval=0)  # every look is a new scan
    await quotas.usage(folder)
    begun.clear()
    go.clear()
    (folder / "b").write_bytes(b"x" * 300)  # landed before the scan: the scan sees it
    scan = asyncio.ensure_future(quotas.usage(folder))
    await asyncio.to_thread(begun.wait, 10)
    await quotas.changed(folder, size=300, files=1)  # reported while the scan runs
    go.set()
    assert await scan == Usage(300, 1)  # the known usage stands: not 600


async def test_a_scan_by_another_replica_counts_the_changes_this_one_made(
    make_quotas: MakeQuotas, folder: Path
) -> None:
    one, two = (make_quotas(Usage(10_000, 100), interval=3600) for _ in range(2))
    assert await one.usage(folder) == Usage(0, 0)
    assert await two.usage(folder) == Usage(0, 0)
    (folder / "a").write_bytes(b"x" * 4000)
    await one.changed(folder, size=4000, files=1)
    assert await two.usage(folder) == Usage(4000, 1)  # not its own hour-old scan
    with pytest.raises(QuotaExceeded) as refused:
        await two.reserve(folder, size=6001)
    assert (refused.value.exceeded, refused.value.usage) == ("bytes", Usage(4000, 1))


async def test_room_taken_ahead_by_one_replica_is_counted_by_another_and_given_back(
    make_quotas: MakeQuotas, folder: Path
) -> None:
    # At most a 64th of the byte quota is taken ahead: 1000 bytes.
    one, two = (make_quotas(Usage(64_000, 100), interval=3600) for _ in range(2))
    held = await one.reserve(folder, files=1)
    await held.grow(size=10, ahead=True)
    assert held.held == Usage(1010, 1)
    await held.grow(size=1000, ahead=True)  # within what it holds: no transaction
    assert held.held == Usage(1010, 1)
    await held.grow(size=1000, ahead=True)
    assert held.held == Usage(3010, 1)
    with pytest.raises(QuotaExceeded) as refused:
        await two.reserve(folder, size=60_991)
    assert refused.value.usage == Usage(3010, 1)
    fits = await two.reserve(folder, size=60_990)  # ahead of nothing: exactly what fits
    assert fits.held == Usage(60_990, 0)
    await fits.release()
    await held.grow(size=61_000, ahead=True)  # ahead, half of what is left free: 495 of 990
    assert held.held == Usage(63_505, 1)
    await held.release()
    done = await two.reserve(folder, size=64_000)
    assert done.held == Usage(64_000, 0)
    await done.release()


async def test_a_lapsed_reservation_holds_no_room_and_is_pruned_with_old_changes(
    make_quotas: MakeQuotas, folder: Path, workspace_db: str
) -> None:
    now = [datetime(2026, 12, 7, tzinfo=UTC)]

    def clock() -> datetime:
        return now[0]

    quotas = make_quotas(Usage(10_000, 100), interval=3600, lease=30, clock=clock)
    await quotas.reserve(folder, size=9_000)  # its replica dies: never released, not renewed
    (folder / "a").write_bytes(b"x" * 500)
    await quotas.changed(folder, size=500, files=1)
    with pytest.raises(QuotaExceeded):
        await quotas.reserve(folder, size=1_000)
    now[0] += timedelta(seconds=30)  # the lease has lapsed
    fits = await quotas.reserve(folder, size=9_500)
    await fits.release()

    async def rows() -> tuple[int, int]:
        db = Database(workspace_db)
        try:
            async with db.reading() as tx:
                held = await tx.execute(select(func.count()).select_from(quota_reservations))
                logged = await tx.execute(select(func.count()).select_from(quota_changes))
                return int(held.scalar_one()), int(logged.scalar_one())
        finally:
            await db.close()

    assert await rows() == (1, 1)
    await quotas.prune()
    assert await rows() == (0, 1)  # the change is recent: a scan may still need it
    now[0] += CHANGES_KEPT
    await quotas.prune()
    assert await rows() == (0, 0)
    assert await quotas.usage(folder) == Usage(500, 1)


async def test_an_upload_takes_room_ahead_a_few_times_only(
    make_quotas: MakeQuotas, folder: Path
) -> None:
    quotas = make_quotas(Usage(1 << 30, 100), interval=3600)  # 16 MiB ahead at most
    taken: list[Usage] = []
    upload = await quotas.reserve(folder, files=1, ahead=True)
    taken.append(upload.held)
    for _ in range(320):  # 20 MiB in 64 KiB chunks
        await upload.grow(size=64 * 1024, ahead=True)
        if upload.held != taken[-1]:
            taken.append(upload.held)
    mib, chunk = 1024 * 1024, 64 * 1024
    # At first 1 MiB; then, each time a chunk needs more, what it asked for and twice as much
    # again ahead, 16 MiB at most: four transactions for 20 MiB.
    assert [u.bytes for u in taken] == [
        mib,
        3 * (mib + chunk),
        3 * (3 * (mib + chunk) + chunk),
        3 * (3 * (mib + chunk) + chunk) + chunk + 16 * mib,
    ]
    assert all(u.files == 1 for u in taken)
    await upload.release()


async def test_drift_a_scan_measured_counts_even_when_writes_overlap_every_scan(
    make_quotas: MakeQuotas, folder: Path, paused_scans: tuple[threading.Event, threading.Event]
) -> None:
    """The terminal wrote 5000 bytes; each later scan measures them but overlaps one small
    write of the service (an editor saving): the usage must not stay blind to them."""
    begun, go = paused_scans
    go.set()
    now = [datetime(2026, 12, 7, tzinfo=UTC)]

    def clock() -> datetime:
        return now[0]

    scanner, writer = (make_quotas(Usage(6_000, 100), interval=60, clock=clock) for _ in range(2))
    assert await scanner.usage(folder) == Usage(0, 0)
    (folder / "by-the-terminal").write_bytes(b"x" * 5_000)
    for step in range(3):
        now[0] += timedelta(seconds=61)  # the usage is old: the next look scans
        begun.clear()
        go.clear()
        scan = asyncio.ensure_future(scanner.usage(folder))
        await asyncio.to_thread(begun.wait, 10)
        (folder / f"saved-{step}").write_bytes(b"y" * 10)
        await writer.changed(folder, size=10, files=1)
        go.set()
        await scan
    # Three scans, three intervals, each of which measured the terminal's 5000 bytes.
    assert (await writer.usage(folder)).bytes >= 5_000
    with pytest.raises(QuotaExceeded):
        await writer.reserve(folder, size=4_000)


async def test_a_pull_checked_while_an_upload_holds_room_counts_that_room(
    make_quotas: MakeQuotas, folder: Path
) -> None:
    """An upload under way on one replica holds 6000 of 10000 bytes; a pull of 5000 bytes on
    another is accepted only if the two fit together (else both complete: 11000 bytes)."""
    one, two = (make_quotas(Usage(10_000, 100), interval=3600) for _ in range(2))
    upload = await one.reserve(folder, size=6_000, files=1)
    (folder / "pulled").write_bytes(b"x" * 5_000)  # what the pull brought
    try:
        with pytest.raises(QuotaExceeded):
            await two.check_now(folder)
    finally:
        (folder / "uploaded").write_bytes(b"x" * 6_000)
        await one.changed(folder, size=6_000, files=1, releasing=upload)
        await upload.release()
    print("usage after both:", await one.usage(folder, fresh=True))


async def test_a_delete_during_another_replicas_scan_frees_its_room(
    make_quotas: MakeQuotas, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan on one replica measured a 5000-byte file; before it records what it measured,
    the file is deleted through another replica (which marks the usage for a rescan): the
    room must be free at once, not after the next scan interval."""
    measured, go = threading.Event(), threading.Event()
    real = quota.measure

    def measured_then_paused(where: Path) -> Usage:
        found = real(where)
        measured.set()
        assert go.wait(10)
        return found

    scanner, deleter = (make_quotas(Usage(10_000, 100), interval=3600) for _ in range(2))
    (folder / "big").write_bytes(b"x" * 5_000)
    assert await deleter.usage(folder) == Usage(5_000, 1)
    monkeypatch.setattr(quota, "measure", measured_then_paused)
    scan = asyncio.ensure_future(scanner.usage(folder, fresh=True))  # e.g. a pull's check
    await asyncio.to_thread(measured.wait, 10)
    (folder / "big").unlink()
    await deleter.forget(folder)
    go.set()
    await scan
    monkeypatch.setattr(quota, "measure", real)
    assert await deleter.usage(folder) == Usage(0, 0)


async def test_a_reservation_measures_an_old_or_marked_usage_before_it_takes_room(
    make_quotas: MakeQuotas, folder: Path
) -> None:
    """The usage is read in the reservation's own transaction; when it is older than the
    interval, or marked for a rescan by a delete, the folder is measured first."""
    now = [datetime(2026, 12, 7, tzinfo=UTC)]

    def clock() -> datetime:
        return now[0]

    quotas = make_quotas(Usage(10_000, 100), interval=60, clock=clock)
    assert await quotas.usage(folder) == Usage(0, 0)
    (folder / "by-the-terminal").write_bytes(b"x" * 5_000)
    now[0] += timedelta(seconds=30)  # fresh: the usage recorded counts
    fits = await quotas.reserve(folder, size=6_000, files=1)
    await fits.release()
    now[0] += timedelta(seconds=31)  # old: measured first
    with pytest.raises(QuotaExceeded) as refused:
        await quotas.reserve(folder, size=6_000, files=1)
    assert refused.value.usage == Usage(5_000, 1)
    (folder / "by-the-terminal").unlink()
    await quotas.forget(folder)  # a delete: measured again at the next check
    fits = await quotas.reserve(folder, size=10_000, files=1)
    assert fits.held == Usage(10_000, 1)
    await fits.release()


async def test_an_upload_near_the_limit_leaves_half_the_free_room_to_other_writes(
    make_quotas: MakeQuotas, folder: Path
) -> None:
    """1200 bytes are free. An upload under way takes room ahead (it cannot know its size):
    half of what is free at most, so that a note saved meanwhile still fits (before, the
    upload held all 1000 it took ahead, having used none of it, and the note was refused).
    The upload then goes on to its end, since the two fit together; the quota is never
    passed."""
    one, two = (make_quotas(Usage(64_000, 100), interval=3600) for _ in range(2))
    (folder / "old").write_bytes(b"x" * 62_800)
    upload = await one.reserve(folder, files=1, ahead=True)
    assert upload.held == Usage(600, 1)
    note = await two.reserve(folder, size=500, files=1)
    (folder / "note").write_bytes(b"n" * 500)
    await two.changed(folder, size=500, files=1, releasing=note)
    for _ in range(13):  # 650 bytes in chunks of 50: past what it holds, then within a step
        await upload.grow(size=50, ahead=True)
    (folder / "upload").write_bytes(b"u" * 650)
    await one.changed(folder, size=650, files=1, releasing=upload)
    assert await one.usage(folder) == Usage(63_950, 3)
    assert quota.measure(folder) == Usage(63_950, 3)
