"""Per-user workspace quotas: bytes and files over all of a user's projects, `.git` included.

Usage is measured by a scan of the user's folder (in a thread, never on the event loop, links
not followed), adjusted after each write this service makes and measured again every
`interval` seconds for every user seen, because the terminal writes files too (its sandbox's
file-size limit bounds a single file; the scan catches the rest).

Every replica serving the volume shares that state in the service's database, so the quota
holds across them: per user folder, the best-known usage and when the scan behind it began
(`quota_usage`), the changes counted in it (`quota_changes`, numbered per folder, which scans
reconcile against), and the room writes under way hold (`quota_reservations`, each with a
lease its replica renews while the write lasts: a replica that dies gives its room back once
the lease lapses). Room is taken in one transaction that holds the folder's row (a row lock
on PostgreSQL, the write lock on SQLite): the usage, every live reservation and the new room
must fit together. A small write costs two transactions: its room taken (the usage read in
the same transaction), then its change counted and its room given back together.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Table, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.runtime.clock import Clock, utc_now
from services.runtime.db import Database, database_conflict, database_unreachable
from services.runtime.errors import DomainError, Kind
from services.runtime.tasks import cancel_and_wait
from services.workspace.orm import quota_changes, quota_reservations, quota_usage
from services.workspace.paths import folder_entries, real_root

log = logging.getLogger(__name__)
BYTES = "bytes"
FILES = "files"
# How long a reservation holds its room unless its replica renews it (it does, every third of
# that, while the write lasts): the room of a replica that died comes back after this.
LEASE = 60.0
# An upload's room is taken ahead, so that its chunks do not each cost a transaction: twice
# what it has asked for so far (this much at first), a 64th of the byte quota at most, and
# half the room left free at most (a 20 MB upload takes room 4 times; near the limit, more
# often, in smaller steps). What it did not use is given back when it ends.
STEP = 1024 * 1024
# Changes are kept this long for the scans that began before them; a scan that took longer
# than half of it is not trusted (changes it overlapped may be gone).
CHANGES_KEPT = timedelta(hours=1)


@dataclass(frozen=True)
class Usage:
    bytes: int
    files: int

    def plus(self, size: int, files: int) -> Usage:
        return Usage(max(0, self.bytes + size), max(0, self.files + files))


class QuotaExceeded(DomainError):
    """A write that would take a user past their quota; the details carry usage and limits.
    Over the byte quota is RESOURCE_EXHAUSTED (HTTP 413), over the file count
    FAILED_PRECONDITION (HTTP 422), both with reason QUOTA_EXCEEDED."""

    reason = "QUOTA_EXCEEDED"

    def __init__(self, exceeded: str, usage: Usage, limits: Usage) -> None:
        if exceeded == BYTES:
            what = f"{usage.bytes} of {limits.bytes} bytes are used"
        else:
            what = f"{usage.files} of {limits.files} files are used"
        super().__init__(
            f"workspace quota exceeded: {what}",
            data={
                "quota": exceeded,
                "usedBytes": str(usage.bytes),
                "usedFiles": str(usage.files),
                "limitBytes": str(limits.bytes),
                "limitFiles": str(limits.files),
            },
        )
        self.kind = Kind.RESOURCE_EXHAUSTED if exceeded == BYTES else Kind.FAILED_PRECONDITION
        self.exceeded = exceeded
        self.usage = usage
        self.limits = limits


def measure(folder: Path) -> Usage:
    """Bytes of regular files and count of every non-folder entry under `folder`; links are
    counted, never followed, and a folder swapped for a link since it was seen is not walked."""
    size = files = 0
    pending = [real_root(folder)]
    while pending:
        directory = pending.pop()
        entries = folder_entries(directory)
        if entries is None:
            continue  # removed, not readable, or a link now, since it was listed
        for name, info in entries:
            if stat.S_ISDIR(info.st_mode):
                pending.append(os.path.join(directory, name))
                continue
            files += 1
            if stat.S_ISREG(info.st_mode):
                size += info.st_size
    return Usage(size, files)


@dataclass(frozen=True)
class Known:
    """A folder's row: its usage, when the scan behind it began (None: measure it again before
    trusting it) and the number of the last change counted in it."""

    usage: Usage
    scanned_at: datetime | None
    seq: int


def _known(row: Any) -> Known:
    return Known(Usage(int(row.bytes), int(row.files)), row.scanned_at, int(row.seq))


def _stale(known: Known, now: datetime, interval: float) -> bool:
    """Whether `known` is to be measured again before a check trusts it."""
    return known.scanned_at is None or (now - known.scanned_at).total_seconds() > interval


class _Store:
    """The quota's shared state; each method is one transaction, run again when it loses to
    another (a deadlock, a serialization failure: `Database.run_in_transaction`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _insert(self, table: Table) -> Any:
        """An INSERT of the database's own dialect (which can say ON CONFLICT)."""
        module: Any = postgresql if self._db.dialect == "postgresql" else sqlite
        return module.insert(table)

    async def known(self, user: str) -> Known | None:
        async with self._db.reading() as tx:
            query = select(quota_usage).where(quota_usage.c.user_id == user)
            row = (await tx.execute(query)).first()
        return _known(row) if row is not None else None

    async def _locked(self, tx: AsyncSession, user: str) -> Known | None:
        """The folder's row, locked until the transaction ends (on SQLite the transaction holds
        the write lock already); None if it has none."""
        query = select(quota_usage).where(quota_usage.c.user_id == user).with_for_update()
        row = (await tx.execute(query)).first()
        return _known(row) if row is not None else None

    async def _hold(self, tx: AsyncSession, user: str, default: Usage) -> Known:
        """The folder's row, locked until the transaction ends (on SQLite the transaction holds
        the write lock already); made from `default`, unscanned, if missing."""
        query = select(quota_usage).where(quota_usage.c.user_id == user).with_for_update()
        row = (await tx.execute(query)).first()
        if row is None:
            await tx.execute(
                self._insert(quota_usage)
                .values(
                    user_id=user,
                    bytes=default.bytes,
                    files=default.files,
                    scanned_at=None,
                    seq=0,
                )
                .on_conflict_do_nothing()
            )
            row = (await tx.execute(query)).one()
        return _known(row)

    async def record_scan(
        self, user: str, measured: Usage, began: datetime, mark: int, *, fresh: bool, now: datetime
    ) -> Usage:
        """Reconcile a scan that began at `began`, when the last change counted was `mark`.

        A change counted after `mark` overlapped the scan, which may or may not have seen it.
        Then the usage known before stands (every change is already added to it), trusted as
        of `began`, and the next scan tries again; only a `fresh` scan (after a pull, which
        nothing accounted) or one of a folder whose usage is not known is taken, with those
        changes added on top, erring towards refusing. A scan older than the one recorded
        (another replica's) is not taken unless `fresh`."""
        c = quota_changes.c

        async def work(tx: AsyncSession) -> Usage:
            known = await self._hold(tx, user, measured)
            raced = (
                await tx.execute(
                    select(
                        func.count(),
                        func.coalesce(func.sum(c.bytes), 0),
                        func.coalesce(func.sum(c.files), 0),
                        func.coalesce(func.sum(case((c.bytes < 0, c.bytes), else_=0)), 0),
                        func.coalesce(func.sum(case((c.files < 0, c.files), else_=0)), 0),
                    ).where(c.user_id == user, c.seq > mark)
                )
            ).one()
            count, size, files = int(raced[0]), int(raced[1]), int(raced[2])
            trusted = known.scanned_at is not None and not fresh
            if trusted and now - began > CHANGES_KEPT / 2:
                assert known.scanned_at is not None
                await tx.execute(
                    update(quota_usage)
                    .where(quota_usage.c.user_id == user)
                    .values(scanned_at=max(known.scanned_at, began))
                )
                return known.usage
            if trusted and count:
                # The scan may or may not have seen the changes it overlapped; what it measured,
                # less what they shrank, is on disk at least: drift the terminal made (beyond
                # what is known) counts now, never a change twice.
                assert known.scanned_at is not None
                floor = measured.plus(int(raced[3]), int(raced[4]))
                usage = Usage(
                    max(known.usage.bytes, floor.bytes), max(known.usage.files, floor.files)
                )
                await tx.execute(
                    update(quota_usage)
                    .where(quota_usage.c.user_id == user)
                    .values(
                        bytes=usage.bytes,
                        files=usage.files,
                        scanned_at=max(known.scanned_at, began),
                    )
                )
                return usage
            if trusted and known.scanned_at is not None and known.scanned_at > began:
                return known.usage
            usage = measured.plus(size, files)
            # Unknown before the scan and changed (or marked for a rescan: a delete) while it
            # ran: what it measured may be gone already; measured again at the next check.
            again = known.scanned_at is None and count > 0
            await tx.execute(
                update(quota_usage)
                .where(quota_usage.c.user_id == user)
                .values(bytes=usage.bytes, files=usage.files, scanned_at=None if again else began)
            )
            return usage

        return await self._db.run_in_transaction(work)

    async def add_change(
        self, user: str, size: int, files: int, now: datetime, *, release: str | None
    ) -> None:
        """Count a completed change in the folder's usage and log it for the scans under way;
        with `release`, that reservation's room is given back at the same moment."""
        u = quota_usage.c
        # One statement locks the row, counts the change (never below zero, as Usage.plus)
        # and numbers it.
        counted = (
            update(quota_usage)
            .where(u.user_id == user)
            .values(
                bytes=case((u.bytes + size < 0, 0), else_=u.bytes + size),
                files=case((u.files + files < 0, 0), else_=u.files + files),
                seq=u.seq + 1,
            )
            .returning(u.seq)
        )

        async def work(tx: AsyncSession) -> None:
            seq = (await tx.execute(counted)).scalar_one_or_none()
            if seq is None:  # no row yet: made (unscanned, from nothing), then counted
                await self._hold(tx, user, Usage(0, 0))
                seq = (await tx.execute(counted)).scalar_one()
            await tx.execute(
                quota_changes.insert().values(
                    user_id=user, seq=seq, bytes=size, files=files, ended_at=now
                )
            )
            if release is not None:
                await tx.execute(
                    delete(quota_reservations).where(quota_reservations.c.id == release)
                )

        await self._db.run_in_transaction(work)

    async def forget(self, user: str, now: datetime) -> None:
        """Mark the usage for a rescan, and log an empty change: a scan under way (it may have
        measured what was just deleted) is not trusted."""
        u = quota_usage.c

        async def work(tx: AsyncSession) -> None:
            marked = (
                update(quota_usage)
                .where(u.user_id == user)
                .values(scanned_at=None, seq=u.seq + 1)
                .returning(u.seq)
            )
            seq = (await tx.execute(marked)).scalar_one_or_none()
            if seq is None:
                return
            await tx.execute(
                quota_changes.insert().values(user_id=user, seq=seq, bytes=0, files=0, ended_at=now)
            )

        await self._db.run_in_transaction(work)

    async def reserved(self, user: str, now: datetime) -> Usage:
        """The room every live reservation of the folder holds."""
        r = quota_reservations
        async with self._db.reading() as tx:
            row = (
                await tx.execute(
                    select(
                        func.coalesce(func.sum(r.c.bytes), 0), func.coalesce(func.sum(r.c.files), 0)
                    ).where(r.c.user_id == user, r.c.expires_at > now)
                )
            ).one()
        return Usage(int(row[0]), int(row[1]))

    async def take(
        self,
        reservation: Reservation,
        *,
        size: int,
        files: int,
        ahead: int,
        limits: Usage,
        now: datetime,
        expires: datetime,
        fresh_for: float | None,
    ) -> Usage | None:
        """Add `size` bytes and `files` files to what `reservation` holds if they fit beside
        the usage and every other live reservation, and up to `ahead` bytes more (half the
        room then left at most); what it holds then. QuotaExceeded (nothing taken) if they do
        not fit.

        None (nothing taken) when the folder has no usage yet, or, with `fresh_for` (a
        reservation's first take), when its usage is marked for a rescan or older than that
        many seconds: it is to be measured first, not here (a scan would hold the row, on
        SQLite the whole database, for as long as it takes)."""
        r = quota_reservations

        async def work(tx: AsyncSession) -> Usage | None:
            known = await self._locked(tx, reservation.user)
            if known is None or (fresh_for is not None and _stale(known, now, fresh_for)):
                return None
            others = (
                await tx.execute(
                    select(
                        func.coalesce(func.sum(r.c.bytes), 0), func.coalesce(func.sum(r.c.files), 0)
                    ).where(
                        r.c.user_id == reservation.user,
                        r.c.expires_at > now,
                        r.c.id != reservation.id,
                    )
                )
            ).one()
            held = reservation.held
            usage = known.usage.plus(int(others[0]) + held.bytes, int(others[1]) + held.files)
            refuse_beyond(usage, limits, size=size, files=files)
            # Half the room left at most: the rest stays free for other writes (a small one
            # near the limit is not refused for room this write may never use).
            extra = max(0, min(ahead, (limits.bytes - usage.bytes - size) // 2))
            holds = Usage(held.bytes + size + extra, held.files + files)
            # Made by the first take, changed by the next ones, made again if another replica
            # pruned it meanwhile (its lease lapsed: its room was checked again in full above).
            values = {"bytes": holds.bytes, "files": holds.files, "expires_at": expires}
            made = self._insert(r).values(id=reservation.id, user_id=reservation.user, **values)
            await tx.execute(made.on_conflict_do_update(index_elements=[r.c.id], set_=values))
            return holds

        return await self._db.run_in_transaction(work)

    async def renew(
        self, ids: list[str], now: datetime, expires: datetime, *, kept: list[str] | None = None
    ) -> None:
        """Extend the leases of `ids` that have not lapsed: a lapsed one may have had its room
        taken by another write meanwhile, so only its next `take` (which checks it all again)
        holds it again."""
        r = quota_reservations

        async def work(tx: AsyncSession) -> None:
            await tx.execute(
                update(r).where(r.c.id.in_(ids), r.c.expires_at > now).values(expires_at=expires)
            )
            if kept:
                # The room of changes made but not counted yet: held until they are.
                await tx.execute(update(r).where(r.c.id.in_(kept)).values(expires_at=expires))

        await self._db.run_in_transaction(work)

    async def drop(self, reservation_id: str) -> None:
        async def work(tx: AsyncSession) -> None:
            await tx.execute(
                delete(quota_reservations).where(quota_reservations.c.id == reservation_id)
            )

        await self._db.run_in_transaction(work)

    async def prune(self, now: datetime) -> None:
        """Lapsed reservations (their replicas died) and changes no scan still needs.

        A lapsed row another transaction holds is left for the next pruning, never waited for.
        Only a renewal and this lock several reservation rows (a take or a count locks its
        folder's row, then its own reservation's, last), and they meet them in different
        orders, a renewal by id, this by expiry: each could hold rows the other waits for,
        and PostgreSQL would cancel one as deadlocked (seen when a replica's clock ran ahead
        of another's). Waiting for nothing, this closes no circle of waits; the rows it leaves
        hold no room meanwhile (every sum skips lapsed rows)."""
        r = quota_reservations

        async def work(tx: AsyncSession) -> None:
            lapsed = select(r.c.id).where(r.c.expires_at <= now).with_for_update(skip_locked=True)
            await tx.execute(delete(r).where(r.c.id.in_(lapsed), r.c.expires_at <= now))
            await tx.execute(
                delete(quota_changes).where(quota_changes.c.ended_at < now - CHANGES_KEPT)
            )

        await self._db.run_in_transaction(work)


def refuse_beyond(usage: Usage, limits: Usage, *, size: int = 0, files: int = 0) -> None:
    """QuotaExceeded if adding `size` bytes and `files` files (either may be negative) to
    `usage` ends past a limit they do not already shrink."""
    after = usage.plus(size, files)
    if size > 0 and after.bytes > limits.bytes:
        raise QuotaExceeded(BYTES, usage, limits)
    if files > 0 and after.files > limits.files:
        raise QuotaExceeded(FILES, usage, limits)


class Quotas:
    """Usage per user folder, and the check every write goes through, shared by every replica
    through `db` (a user's folder is named by their id, the key of its rows)."""

    def __init__(
        self,
        db: Database,
        limits: Usage,
        *,
        interval: float,
        lease: float = LEASE,
        clock: Clock = utc_now,
    ) -> None:
        self.limits = limits
        self.interval = interval
        self.lease = lease
        self.most_ahead = limits.bytes // 64
        self._store = _Store(db)
        self._clock = clock
        self._locks: dict[Path, asyncio.Lock] = {}
        # Folders this replica has served: it rescans them when their usage gets old.
        self._seen: set[Path] = set()
        # This replica's reservations with a row: their leases are renewed while they last.
        self._live: dict[str, Reservation] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Changes made whose accounting failed (user, bytes, files, reservation): retried.
        self._pending: list[tuple[str, int, int, str | None]] = []

    @staticmethod
    def _user(folder: Path) -> str:
        return folder.name

    async def usage(self, folder: Path, *, fresh: bool = False) -> Usage:
        """The folder's usage: measured when unknown, older than the interval, or `fresh`
        (the scan is reconciled with the changes it overlapped: see `_Store.record_scan`)."""
        self._seen.add(folder)
        user = self._user(folder)
        lock = self._locks.setdefault(folder, asyncio.Lock())
        async with lock:
            known = await self._store.known(user)
            if not fresh and known is not None and not _stale(known, self._clock(), self.interval):
                return known.usage
            # Read before the scan begins: a change counted by then is on disk by then.
            mark = known.seq if known is not None else 0
            began = self._clock()
            measured = await asyncio.to_thread(measure, folder)
            return await self._store.record_scan(
                user, measured, began, mark, fresh=fresh, now=self._clock()
            )

    async def check(self, folder: Path, *, size: int = 0, files: int = 0) -> Usage:
        """Refuse, before it is made, a change that adds `size` bytes and `files` files (either
        may be negative) when it would end past a limit it does not already shrink."""
        usage = await self.usage(folder)
        self.refuse_beyond(usage, size=size, files=files)
        return usage

    async def reserve(
        self, folder: Path, *, size: int = 0, files: int = 0, ahead: bool = False
    ) -> Reservation:
        """`check`, counting the writes under way on every replica, and hold the room until
        the reservation is released (after the write's own `changed`): concurrent writes
        cannot overrun. `ahead`: see `Reservation.grow`. The usage is read (measured first
        if it is old) in the reservation's first take, not in a transaction of its own."""
        self._seen.add(folder)
        reservation = Reservation(self, folder)
        try:
            await reservation.grow(size=size, files=files, ahead=ahead)
        except BaseException:
            await reservation.release()
            raise
        return reservation

    async def _take(
        self, reservation: Reservation, size: int, files: int, ahead: int, *, first: bool
    ) -> Usage:
        """Take room for `reservation` if it fits beside the folder's usage and every live
        reservation. Its first take trusts the usage only if it is fresh (else it is measured,
        then taken); the next ones take it as recorded (a delete meanwhile marks the usage for
        a rescan, which must not lift the quota for the rest of an upload)."""
        self._live[reservation.id] = reservation

        async def take(fresh_for: float | None) -> Usage | None:
            now = self._clock()
            return await self._store.take(
                reservation,
                size=size,
                files=files,
                ahead=ahead,
                limits=self.limits,
                now=now,
                expires=now + timedelta(seconds=self.lease),
                fresh_for=fresh_for,
            )

        held = await take(self.interval if first else None)
        if held is None:
            await self.usage(reservation.folder)  # measured, outside the take's transaction
            held = await take(None)
        if held is None:
            raise RuntimeError(f"no usage recorded for {reservation.user} after measuring it")
        return held

    def refuse_beyond(self, usage: Usage, *, size: int = 0, files: int = 0) -> None:
        refuse_beyond(usage, self.limits, size=size, files=files)

    async def check_now(self, folder: Path) -> None:
        """After a change this service could not size beforehand (a pull): measure afresh and
        refuse if the folder is past a limit."""
        measured = await self.usage(folder, fresh=True)
        # Writes under way on any replica hold room the scan did not see: counted too (read
        # after the scan is recorded: a later take sees the new usage).
        held = await self._store.reserved(self._user(folder), self._clock())
        usage = measured.plus(held.bytes, held.files)
        if usage.bytes > self.limits.bytes:
            raise QuotaExceeded(BYTES, usage, self.limits)
        if usage.files > self.limits.files:
            raise QuotaExceeded(FILES, usage, self.limits)

    async def changed(
        self,
        folder: Path,
        *,
        size: int = 0,
        files: int = 0,
        releasing: Reservation | None = None,
    ) -> None:
        """Account a change this service has just completed, for every replica; the periodic
        scan corrects any drift (files the terminal wrote, a change counted twice). The room
        the change's write held (`releasing`) is given back in the same transaction: never
        counted twice, nor not at all, by a check meanwhile."""
        self._seen.add(folder)
        release = releasing.settled() if releasing is not None else None
        change = (self._user(folder), size, files, release)
        try:
            await self._store.add_change(*change[:3], self._clock(), release=release)
        except Exception as error:
            if database_unreachable(error):
                why = "the database is unreachable"
            elif database_conflict(error):
                # Lost to other transactions on every run (add_change runs again at once, and
                # the next run passes unless something holds the user's rows against it):
                # the write is whole on disk, so ABORTED would be untrue, and its room given
                # back uncounted would let the user past the quota.
                why = "its count kept meeting other transactions"
            else:
                raise
            # The write is made: it is counted once the database takes it (by the lease
            # loop), its room held meanwhile. Never lost, never counted twice.
            log.warning("a workspace change is counted later", extra={"why": why})
            self._pending.append(change)

    async def forget(self, folder: Path) -> None:
        """A change of unknown size (a recursive delete): measure again at the next check (the
        usage known stands until then)."""
        await self._store.forget(self._user(folder), self._clock())

    async def prune(self) -> None:
        """Drop lapsed reservations (their replicas died: they count no more already) and
        changes older than any scan still reconciles against (CHANGES_KEPT)."""
        await self._store.prune(self._clock())

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._rescan_forever(), name="workspace-quota-scan"),
            asyncio.create_task(self._renew_forever(), name="workspace-quota-leases"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []

    async def _rescan_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.prune()
            except Exception:
                log.exception("pruning the workspace quota's state failed")
            for folder in list(self._seen):
                try:
                    await self.usage(folder)
                except Exception:  # one unreadable folder must not stop the others' scans
                    log.exception("workspace usage scan failed", extra={"folder": folder.name})

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.renew()
            except Exception:
                log.exception("renewing the workspace quota's reservations failed")

    async def renew(self) -> None:
        """What the lease loop does every third of a lease: count the changes whose accounting
        failed (retried), then extend the leases of this replica's reservations."""
        await self._count_pending()
        kept = [p[3] for p in self._pending if p[3] is not None]
        if not self._live and not kept:
            return
        now = self._clock()
        await self._store.renew(
            list(self._live), now, now + timedelta(seconds=self.lease), kept=kept
        )

    async def _count_pending(self) -> None:
        while self._pending:
            user, size, files, release = self._pending[0]
            try:
                await self._store.add_change(user, size, files, self._clock(), release=release)
            except Exception:
                log.exception("counting a workspace change failed; retried")
                return
            self._pending.pop(0)


class Reservation:
    """Room a write under way holds in its owner's quota, on every replica: grown as its bytes
    arrive (only growth is checked), released once the write is accounted or abandoned."""

    def __init__(self, quotas: Quotas, folder: Path) -> None:
        self._quotas = quotas
        self.id = str(uuid.uuid4())
        self.folder = folder
        self.user = quotas._user(folder)
        self.held = Usage(0, 0)  # what its row holds
        self._used = Usage(0, 0)  # what the write has asked for
        self._row = False  # whether it may have a row (to give back)

    async def grow(self, *, size: int = 0, files: int = 0, ahead: bool = False) -> None:
        """Take `size` more bytes and `files` more files; QuotaExceeded if they do not fit.
        `ahead` (a write that grows in steps: an upload's chunks) takes more bytes than asked
        when they fit, so that the next steps are counted here without a transaction each."""
        size, files = max(0, size), max(0, files)
        used = Usage(self._used.bytes + size, self._used.files + files)
        more = Usage(max(0, used.bytes - self.held.bytes), max(0, used.files - self.held.files))
        if more.bytes or more.files:
            first, self._row = not self._row, True
            extra = min(max(STEP, 2 * used.bytes), self._quotas.most_ahead) if ahead else 0
            try:
                self.held = await self._quotas._take(
                    self, more.bytes, more.files, extra, first=first
                )
            except QuotaExceeded:
                # Refused, nothing written: a first take leaves no row to give back.
                self._row = not first
                raise
        self._used = used

    async def release(self) -> None:
        """Give the room back (what the write has not accounted by now is not counted)."""
        if self.settled() is not None:
            await self._quotas._store.drop(self.id)

    def settled(self) -> str | None:
        """Marks the room given back (renewed no more); the id of its row if it may have one."""
        self._quotas._live.pop(self.id, None)
        self.held = self._used = Usage(0, 0)
        if not self._row:
            return None
        self._row = False
        return self.id


__all__ = ["Known", "QuotaExceeded", "Quotas", "Reservation", "Usage", "measure"]
