"""The runtime's idempotency store on real databases, with a clock the test moves: stored
responses, reuse with another request, keys in flight, released, abandoned and expired."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from sqlalchemy import Column, MetaData, String, Table, insert, select, text

from services.runtime.context import Identity, current_identity, current_method, idempotency_key
from services.runtime.db import Database
from services.runtime.errors import Conflict, InvalidArgument
from services.runtime.idempotency import (
    RESUMED,
    TABLE,
    IdempotencyStore,
    fingerprint,
    idempotency_table,
    resuming,
)
from tests.waiting import until_async

EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(database_url: str, clock: Clock) -> AsyncIterator[IdempotencyStore]:
    metadata = MetaData()
    table = idempotency_table(metadata)
    db = Database(database_url)
    async with db.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    try:
        yield IdempotencyStore(db, table, ttl=3600, in_flight_timeout=60, clock=clock)
    finally:
        await db.close()


class Handler:
    """Counts its runs; answers the request's value with the run number."""

    def __init__(self) -> None:
        self.runs = 0

    async def __call__(self) -> StringValue:
        self.runs += 1
        return StringValue(value=f"run {self.runs}")


@contextlib.contextmanager
def serving(key: str, user: str = "u-1") -> Iterator[None]:
    """The context the interceptor sets up for a call: its caller, its method and its key."""
    identity = Identity(user, "s-1", f"{user}@example.com", frozenset({"user"}), "t", EXPIRES)
    tokens = (
        current_identity.set(identity),
        current_method.set("/stockfolio.test.v1.Things/Create"),
        idempotency_key.set(key),
    )
    try:
        yield
    finally:
        idempotency_key.reset(tokens[2])
        current_method.reset(tokens[1])
        current_identity.reset(tokens[0])


async def call(
    store: IdempotencyStore, key: str, body: str, handler: Handler, user: str = "u-1"
) -> StringValue:
    with serving(key, user):
        return await store.run(StringValue(value=body), StringValue, handler)


async def test_a_repeat_gets_the_stored_response_until_the_key_expires(
    store: IdempotencyStore, clock: Clock
) -> None:
    handler = Handler()
    assert (await call(store, "k", "a", handler)).value == "run 1"
    clock.now += timedelta(minutes=59)
    assert (await call(store, "k", "a", handler)).value == "run 1"
    clock.now += timedelta(minutes=2)  # past the hour: the key is free again, even for "b"
    assert (await call(store, "k", "b", handler)).value == "run 2"
    assert handler.runs == 2


async def test_without_a_key_every_request_runs(store: IdempotencyStore) -> None:
    handler = Handler()
    await call(store, "", "a", handler)
    await call(store, "", "a", handler)
    assert handler.runs == 2


async def test_another_request_with_the_key_is_refused(store: IdempotencyStore) -> None:
    handler = Handler()
    await call(store, "k", "a", handler)
    with pytest.raises(InvalidArgument) as raised:
        await call(store, "k", "b", handler)
    assert raised.value.reason == "IDEMPOTENCY_KEY_REUSED"
    assert (await call(store, "k", "a", handler, user="u-2")).value == "run 2"


async def test_a_key_in_flight_is_a_conflict_until_it_finishes(store: IdempotencyStore) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    handler = Handler()

    async def slow() -> StringValue:
        entered.set()  # the key is claimed: the handler runs only after its claim
        await release.wait()
        return await handler()

    with serving("k"):
        first = asyncio.create_task(store.run(StringValue(value="a"), StringValue, slow))
        await asyncio.wait_for(entered.wait(), 10)
        with pytest.raises(Conflict) as raised:
            await store.run(StringValue(value="a"), StringValue, handler)
        assert raised.value.reason == "IDEMPOTENCY_IN_PROGRESS"
        release.set()
        assert (await first).value == "run 1"
    assert (await call(store, "k", "a", handler)).value == "run 1"


async def test_a_failure_or_a_cancellation_releases_the_key(store: IdempotencyStore) -> None:
    async def fails() -> StringValue:
        raise LookupError("oversold")

    entered = asyncio.Event()

    async def hangs_forever() -> StringValue:
        entered.set()  # the key is claimed: the handler runs only after its claim
        await asyncio.Event().wait()
        raise AssertionError("never released")

    with serving("k"):
        with pytest.raises(LookupError):
            await store.run(StringValue(value="a"), StringValue, fails)
        hangs = asyncio.create_task(store.run(StringValue(value="a"), StringValue, hangs_forever))
        await asyncio.wait_for(entered.wait(), 10)
        hangs.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hangs
    assert (await call(store, "k", "a", Handler())).value == "run 1"


async def test_a_claim_abandoned_mid_request_can_be_taken_after_the_timeout(
    store: IdempotencyStore, clock: Clock
) -> None:
    # A claim whose process died: in flight, never finished or released.
    assert await store._claim("u-1", "k", "hash-a") is None
    with pytest.raises(Conflict):
        await store._claim("u-1", "k", "hash-a")
    clock.now += timedelta(seconds=61)
    assert await store._claim("u-1", "k", "hash-a") is RESUMED


async def test_work_settled_in_its_transaction_runs_once_even_if_the_caller_hangs_up_after(
    store: IdempotencyStore,
) -> None:
    """The work and its stored answer commit together: a caller that goes away right after the
    commit (or a process that dies there) leaves the key done, and the retry gets the answer
    without the work running again. Settled in a transaction that rolls back, the key is free."""
    db = store._db
    work = MetaData()
    done = Table("work_done", work, Column("run", String(16), primary_key=True))
    async with db.engine.begin() as connection:
        await connection.run_sync(work.create_all)
    runs = 0

    async def settles_then_hangs_up() -> StringValue:
        nonlocal runs
        runs += 1
        answer = StringValue(value=f"run {runs}")
        async with db.transaction() as tx:
            await tx.execute(insert(done).values(run=answer.value))
            await store.settle(tx, lambda: answer)
        raise asyncio.CancelledError  # the caller left between the commit and the answer

    with serving("k"), pytest.raises(asyncio.CancelledError):
        await store.run(StringValue(value="a"), StringValue, settles_then_hangs_up)
    again = Handler()
    assert (await call(store, "k", "a", again)).value == "run 1"
    assert again.runs == 0
    async with db.reading() as session:
        assert (await session.execute(select(done.c.run))).scalars().all() == ["run 1"]

    async def settles_then_rolls_back() -> StringValue:
        async with db.transaction() as tx:
            await store.settle(tx, lambda: StringValue(value="never"))
            raise LookupError("oversold")  # the transaction and the settle roll back

    with serving("k2"), pytest.raises(LookupError):
        await store.run(StringValue(value="b"), StringValue, settles_then_rolls_back)
    assert (await call(store, "k2", "b", Handler())).value == "run 1"


async def test_a_running_request_keeps_its_claim_by_renewing_the_lease(
    database_url: str, clock: Clock
) -> None:
    """The claim is a lease of `in_flight_timeout`, renewed while the request runs: a slow
    request is never taken for abandoned (a retry meanwhile is 409), whereas a dead one's claim
    lapses within the lease (see the test above)."""
    metadata = MetaData()
    table = idempotency_table(metadata)
    db = Database(database_url)
    async with db.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    store = IdempotencyStore(db, table, ttl=3600, in_flight_timeout=0.3, clock=clock)
    try:
        release = asyncio.Event()
        handler = Handler()

        async def slow() -> StringValue:
            await release.wait()
            return await handler()

        async def renewed() -> bool:
            # The lease reaches past the store's clock again only once a beat renewed it.
            async with db.reading() as session:
                lease_end = await session.scalar(select(table.c.locked_until))
            return lease_end is not None and lease_end > clock.now

        with serving("slow"):
            running = asyncio.create_task(store.run(StringValue(value="a"), StringValue, slow))
            await until_async(renewed, "the claim")
            for _ in range(3):
                # Far past the lease on the store's clock; then a beat for the renewal.
                clock.now += timedelta(seconds=30)
                await until_async(renewed, "the lease renewed")
                with pytest.raises(Conflict):
                    await store.run(StringValue(value="a"), StringValue, handler)
            release.set()
            assert (await running).value == "run 1"
        assert (await call(store, "slow", "a", Handler())).value == "run 1"
        assert handler.runs == 1
    finally:
        await db.close()


async def test_a_retry_that_takes_over_an_abandoned_claim_knows_it(
    store: IdempotencyStore, clock: Clock
) -> None:
    """The handler of a retry whose first attempt's replica died may find part of its work
    done (a file written): `resuming()` tells it so; a first attempt is not resuming."""
    seen: list[bool] = []

    async def handler() -> StringValue:
        seen.append(resuming())
        return StringValue(value="ok")

    request = StringValue(value="a")
    with serving("k"):
        await store.run(request, StringValue, handler)
    # A claim left in flight by a dead replica, for the same request.
    with serving("k2"):
        hash_of = fingerprint("Create", request)
        assert await store._claim("u-1", "k2", hash_of) is None
        clock.now += timedelta(seconds=61)
        await store.run(request, StringValue, handler)
    assert seen == [False, True]
    assert resuming() is False


async def test_a_key_whose_release_failed_is_free_as_soon_as_the_database_is_back(
    store: IdempotencyStore, database_url: str
) -> None:
    handler = Handler()
    outside = Database(database_url)  # an operator's connection, as a database restart is

    async def rename(old: str, new: str) -> None:
        async with outside.transaction() as tx:
            await tx.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))

    async def fails_with_the_database_away() -> StringValue:
        await rename(TABLE, "keys_away")  # the release that follows fails too
        raise ConnectionError("the database went away")

    try:
        with serving("k"), pytest.raises(ConnectionError):
            await store.run(StringValue(value="a"), StringValue, fails_with_the_database_away)
        await rename("keys_away", TABLE)
        # The lease would hold the key for a minute (the clock stands still here): a retry is
        # answered, not refused IN_PROGRESS, once the background release gets through.
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            try:
                answer = await call(store, "k", "a", handler)
                break
            except Conflict:
                assert asyncio.get_running_loop().time() < deadline, "the key stayed claimed"
                await asyncio.sleep(0.05)
        assert (answer.value, handler.runs) == ("run 1", 1)
    finally:
        await outside.close()


async def test_a_request_whose_claim_was_taken_over_cannot_commit_its_work(
    store: IdempotencyStore, clock: Clock
) -> None:
    """A request that stalls past its lease (its renewals failing, say) while a retry takes the
    key over: the retry's work counts, and the stalled one's transaction is refused at its
    settle, so the work is done once, not twice."""
    db = store._db
    work = MetaData()
    done = Table("work_taken_over", work, Column("run", String(16), primary_key=True))
    async with db.engine.begin() as connection:
        await connection.run_sync(work.create_all)
    stalled, retried = asyncio.Event(), asyncio.Event()

    def doing(name: str, wait: asyncio.Event | None) -> Callable[[], Awaitable[StringValue]]:
        async def handler() -> StringValue:
            if wait is not None:
                stalled.set()
                await wait.wait()
            answer = StringValue(value=name)
            async with db.transaction() as tx:
                await tx.execute(insert(done).values(run=name))
                await store.settle(tx, lambda: answer)
            return answer

        return handler

    request = StringValue(value="a")
    with serving("k"):
        first = asyncio.create_task(store.run(request, StringValue, doing("first", retried)))
        await stalled.wait()
        clock.now += timedelta(seconds=61)  # its lease has lapsed: a retry takes the key over
        assert (await store.run(request, StringValue, doing("retry", None))).value == "retry"
        retried.set()
        with pytest.raises(Conflict):
            await first
        # Asked again, the key answers what the retry did.
        assert (await store.run(request, StringValue, doing("third", None))).value == "retry"
    async with db.reading() as session:
        assert (await session.execute(select(done.c.run))).scalars().all() == ["retry"]
