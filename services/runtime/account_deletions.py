"""Erasing what deleted accounts owned, in every service: each follows the users service's record
of deletions (ListAccountDeletions, a tombstone per account written in the transaction that
deleted it) from a cursor of its own, and hands each user id to its own purge.

Pull-based and durable: the users service needs no other service's address, a service that was
down catches up when it comes back, and nothing depends on Redis. The cursor moves past a
deletion only once its purge has returned (committed); a purge that fails is tried again at the
next round, from the same place. Purges must therefore be idempotent: one that ran and whose
cursor was not advanced (the process died in between) runs again and finds nothing to erase.

Where the service keeps its data in a database, the cursor is a row there
(`account_purge_cursor_table`, created by its migrations), and one replica at a time follows
(a lease in the service's cache; without one to share, each replica does, harmlessly). A
service that keeps nothing durable (the terminal's live shells) follows on every replica from an
in-memory cursor (`MemoryCursor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

import grpc
from sqlalchemy import BigInteger, Column, MetaData, String, Table, insert, select, update
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.auth import ServiceCredentials
from services.runtime.cache import Cache
from services.runtime.channels import create_channel
from services.runtime.config import Env, RuntimeConfig
from services.runtime.db import Database
from services.runtime.lease import Lease as HeldLease
from services.runtime.sessions import USERS_SERVICE
from services.runtime.tasks import cancel_and_wait
from services.runtime.tokens import service_token_signer

log = logging.getLogger(__name__)

CURSOR_TABLE = "account_purge_cursor"
# The cursor's row: one per table (a table could follow more than one feed one day).
CURSOR_NAME = "account-deletions"
# Seconds between two rounds (ACCOUNT_PURGE_INTERVAL): how long a deleted account's data may
# outlive it, at worst, while every service is up.
DEFAULT_INTERVAL = 5.0
# Deletions asked for at once; a full batch is followed at once by the next.
BATCH = 100
# The lease lasts this many rounds: a follower that died hands over after about that long.
LEASE_ROUNDS = 3
MIN_LEASE = 10.0

Purge = Callable[[str], Awaitable[None]]


def purge_interval(env: Env) -> float:
    """ACCOUNT_PURGE_INTERVAL, read by each service that follows the deletions."""
    return env.float("ACCOUNT_PURGE_INTERVAL", DEFAULT_INTERVAL, minimum=0.05)


def account_purge_cursor_table(metadata: MetaData) -> Table:
    """The cursor's table, added to a service's metadata (its migration creates it)."""
    return Table(
        CURSOR_TABLE,
        metadata,
        Column("name", String(64), primary_key=True),
        Column("sequence", BigInteger, nullable=False),
    )


class Cursor(Protocol):
    async def read(self) -> int:
        """The sequence of the last deletion purged here (0: none)."""
        ...

    async def advance(self, sequence: int) -> None:
        """The deletion `sequence` (and every one before) is purged: never moves back."""
        ...


class MemoryCursor:
    """A cursor that lives as long as its process: for what dies with the process too."""

    def __init__(self) -> None:
        self.sequence = 0

    async def read(self) -> int:
        return self.sequence

    async def advance(self, sequence: int) -> None:
        self.sequence = max(self.sequence, sequence)


class DatabaseCursor:
    """The cursor as a row of the service's own database (`account_purge_cursor_table`)."""

    def __init__(self, db: Database, table: Table, name: str = CURSOR_NAME) -> None:
        self._db = db
        self._table = table
        self._name = name

    async def read(self) -> int:
        t = self._table.c
        async with self._db.reading() as session:
            found = await session.execute(select(t.sequence).where(t.name == self._name))
            return int(found.scalar_one_or_none() or 0)

    async def advance(self, sequence: int) -> None:
        t = self._table.c
        async with self._db.transaction() as session:
            moved = await session.execute(
                update(self._table)
                .where(t.name == self._name, t.sequence < sequence)
                .values(sequence=sequence)
            )
            if getattr(moved, "rowcount", 0):
                return
            found = await session.execute(select(t.sequence).where(t.name == self._name))
            if found.first() is None:
                await session.execute(
                    insert(self._table).values(name=self._name, sequence=sequence)
                )


class Deletions(Protocol):
    """Where deletions are read from: the users service, in production."""

    async def after(self, sequence: int, limit: int) -> list[tuple[str, int]]:
        """(user id, sequence) of deletions after `sequence`, oldest first, `limit` at most."""
        ...


class RemoteDeletions:
    """ListAccountDeletions on the users service, with this service's own service token."""

    def __init__(
        self, channel: grpc.aio.Channel, credentials: ServiceCredentials, *, deadline: float
    ) -> None:
        self._stub = users_pb2_grpc.UsersServiceStub(channel)
        self._credentials = credentials
        self._deadline = deadline

    async def after(self, sequence: int, limit: int) -> list[tuple[str, int]]:
        answer = await self._stub.ListAccountDeletions(
            users_pb2.ListAccountDeletionsRequest(after_sequence=sequence, limit=limit),
            metadata=self._credentials.metadata(),
            timeout=self._deadline,
        )
        return [(d.user_id, d.sequence) for d in answer.deletions]


class Lease(Protocol):
    async def held(self) -> bool:
        """Whether this replica may follow now (taken or renewed if it can be)."""
        ...

    async def release(self) -> None:
        """Give it up (this replica stops following)."""
        ...


class CacheLease:
    """One follower among replicas sharing `cache`: a lease taken, and renewed every round.
    A cache that cannot be reached lets every replica follow (purges are idempotent)."""

    def __init__(self, cache: Cache, key: str, ttl: float) -> None:
        self._cache = cache
        self._key = key
        self._ttl = ttl
        self._holder = uuid.uuid4().hex
        self._term = 0

    async def held(self) -> bool:
        term = await self._cache.lead(self._key, self._holder, self._ttl, self._term)
        if term is None:
            return True
        if term > 0:
            self._term = term
            return True
        return False

    async def release(self) -> None:
        if self._term > 0:
            await self._cache.release(HeldLease(self._key, self._holder, self._term, self._ttl))


class DeletionFollower:
    """Hands each deleted account's id to `purge`, in order, advancing `cursor` after each."""

    def __init__(
        self,
        deletions: Deletions,
        cursor: Cursor,
        purge: Purge,
        *,
        interval: float,
        lease: Lease | None = None,
        batch: int = BATCH,
        name: str = "",
    ) -> None:
        self._deletions = deletions
        self._cursor = cursor
        self._purge = purge
        self._interval = interval
        self._lease = lease
        self._batch = batch
        self._name = name
        self._task: asyncio.Task[None] | None = None
        # Set after each round, whatever it found: what a test waits on.
        self.rounds = 0

    async def round(self) -> int:
        """Purge every deletion not purged yet (batch after batch); how many were purged.
        A failure stops the round where it happened (raised): the next starts there again."""
        if self._lease is not None and not await self._lease.held():
            return 0
        done = 0
        while True:
            after = await self._cursor.read()
            found = await self._deletions.after(after, self._batch)
            for user_id, sequence in found:
                await self._purge(user_id)
                await self._cursor.advance(sequence)
                done += 1
                log.info(
                    "erased a deleted account's data",
                    extra={"follower": self._name, "userId": user_id, "sequence": sequence},
                )
            if len(found) < self._batch:
                return done

    async def _follow_forever(self) -> None:
        while True:
            try:
                await self.round()
            except grpc.aio.AioRpcError as error:
                # The users service away (starting, restarting): the next round asks again.
                log.info(
                    "account deletions not read; trying again",
                    extra={"follower": self._name, "code": error.code().name},
                )
            except Exception:
                log.exception("erasing a deleted account failed; trying again")
            self.rounds += 1
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._follow_forever(), name=f"account-deletions-{self._name}"
            )

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._lease is not None:
            with contextlib.suppress(Exception):  # it lapses anyway
                await self._lease.release()


async def follow_account_deletions(
    config: RuntimeConfig,
    resources: contextlib.AsyncExitStack,
    purge: Purge,
    cursor: Cursor,
    *,
    interval: float,
    cache: Cache | None = None,
) -> DeletionFollower:
    """A started follower of the users service's deletions for `config.service`, stopped with
    `resources` (its channel closed after it); with `cache`, one replica at a time follows."""
    channel = create_channel(
        config.addresses["users"], [USERS_SERVICE], deadline=config.rpc_deadline
    )
    resources.push_async_callback(channel.close)
    credentials = ServiceCredentials(service_token_signer(config), "users")
    lease = None
    if cache is not None:
        ttl = max(MIN_LEASE, LEASE_ROUNDS * interval)
        lease = CacheLease(cache, "account-deletions:lease", ttl)
    follower = DeletionFollower(
        RemoteDeletions(channel, credentials, deadline=config.rpc_deadline),
        cursor,
        purge,
        interval=interval,
        lease=lease,
        name=config.service,
    )
    follower.start()
    resources.push_async_callback(follower.stop)
    return follower
