"""The unit of work on real databases: commit on success, roll back on an exception, and on
SQLite, writers that queue rather than fail."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from services.runtime.db import (
    PING_IF_IDLE,
    Database,
    database_conflict,
    database_unreachable,
    is_sqlite,
    normalize_url,
)
from tests.conftest import POSTGRES_ADMIN_URL, connections_refused
from tests.waiting import until


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    async with db.transaction() as session:
        await session.execute(text("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER)"))
        await session.execute(text("INSERT INTO counters VALUES ('trades', 0)"))
    try:
        yield db
    finally:
        await db.close()


async def value_of(db: Database, name: str = "trades") -> int | None:
    async with db.reading() as session:
        found = await session.scalar(
            text("SELECT value FROM counters WHERE name = :name"), {"name": name}
        )
    return None if found is None else int(found)


async def test_a_transaction_commits_when_its_block_succeeds(database: Database) -> None:
    async with database.transaction() as session:
        await session.execute(text("UPDATE counters SET value = 5 WHERE name = 'trades'"))
        await session.execute(text("INSERT INTO counters VALUES ('cash', 100)"))
    assert await value_of(database) == 5
    assert await value_of(database, "cash") == 100


async def test_a_transaction_rolls_back_everything_when_its_block_raises(
    database: Database,
) -> None:
    async def trade_then_fail() -> None:
        async with database.transaction() as session:
            await session.execute(text("UPDATE counters SET value = 5 WHERE name = 'trades'"))
            await session.execute(text("INSERT INTO counters VALUES ('cash', 100)"))
            raise LookupError("oversold")

    with pytest.raises(LookupError, match="oversold"):
        await trade_then_fail()
    assert await value_of(database) == 0
    assert await value_of(database, "cash") is None


async def test_a_failed_statement_rolls_back_the_transaction(database: Database) -> None:
    async def update_then_duplicate() -> None:
        async with database.transaction() as session:
            await session.execute(text("UPDATE counters SET value = 7 WHERE name = 'trades'"))
            await session.execute(text("INSERT INTO counters VALUES ('trades', 1)"))

    with pytest.raises(IntegrityError, match=r"(?i)unique|duplicate"):
        await update_then_duplicate()
    assert await value_of(database) == 0


async def test_ping_answers_true_and_the_dialect_names_the_database(
    database: Database, database_url: str
) -> None:
    assert await database.ping() is True
    assert database.dialect == ("sqlite" if is_sqlite(database_url) else "postgresql")


async def test_concurrent_increments_lose_nothing(database: Database) -> None:
    async def increment() -> None:
        async with database.transaction() as session:
            await session.execute(
                text("UPDATE counters SET value = value + 1 WHERE name = 'trades'")
            )

    await asyncio.wait_for(asyncio.gather(*(increment() for _ in range(20))), timeout=120)
    assert await value_of(database) == 20


async def test_read_then_write_with_for_update_loses_nothing_on_either_database(
    database: Database,
) -> None:
    # The portable way to read, decide and write: FOR UPDATE locks the row on PostgreSQL (plain
    # SELECT would lose updates under READ COMMITTED); SQLite's writers already queue at BEGIN.
    counters = Table("counters", MetaData(), Column("name", Text), Column("value", Integer))

    async def read_then_write() -> None:
        async with database.transaction() as session:
            current = await session.scalar(
                select(counters.c.value).where(counters.c.name == "trades").with_for_update()
            )
            assert current is not None
            await asyncio.sleep(0.005)  # give the others every chance to interleave
            await session.execute(
                update(counters).where(counters.c.name == "trades").values(value=current + 1)
            )

    await asyncio.wait_for(asyncio.gather(*(read_then_write() for _ in range(20))), 120)
    assert await value_of(database) == 20


async def test_sqlite_read_then_write_transactions_queue_instead_of_failing(
    sqlite_url: str,
) -> None:
    database = Database(sqlite_url)
    try:
        async with database.transaction() as session:
            await session.execute(text("CREATE TABLE counters (name TEXT PRIMARY KEY, value INT)"))
            await session.execute(text("INSERT INTO counters VALUES ('trades', 0)"))

        async def read_then_write() -> None:
            async with database.transaction() as session:
                current = await session.scalar(
                    text("SELECT value FROM counters WHERE name = 'trades'")
                )
                await asyncio.sleep(0.005)  # give the others every chance to interleave
                await session.execute(
                    text("UPDATE counters SET value = :v WHERE name = 'trades'"),
                    {"v": int(current) + 1},
                )

        await asyncio.wait_for(asyncio.gather(*(read_then_write() for _ in range(20))), 120)
        assert await value_of(database) == 20, "no lost update and no 'database is locked'"
    finally:
        await database.close()


async def test_sqlite_readers_run_beside_an_open_writer(sqlite_url: str) -> None:
    database = Database(sqlite_url)
    try:
        async with database.transaction() as session:
            await session.execute(text("CREATE TABLE counters (name TEXT PRIMARY KEY, value INT)"))
            await session.execute(text("INSERT INTO counters VALUES ('trades', 1)"))
        async with database.transaction() as writer:
            await writer.execute(text("UPDATE counters SET value = 2"))
            # The write lock is held; a reader still answers (WAL), seeing the committed value.
            assert await asyncio.wait_for(value_of(database), timeout=10) == 1
        assert await value_of(database) == 2
    finally:
        await database.close()


async def test_sqlite_foreign_keys_are_enforced(sqlite_url: str) -> None:
    database = Database(sqlite_url)
    try:
        async with database.transaction() as session:
            await session.execute(text("CREATE TABLE portfolios (id TEXT PRIMARY KEY)"))
            await session.execute(
                text("CREATE TABLE trades (id TEXT, portfolio_id TEXT REFERENCES portfolios(id))")
            )

        async def orphan_trade() -> None:
            async with database.transaction() as session:
                await session.execute(text("INSERT INTO trades VALUES ('t-1', 'nope')"))

        with pytest.raises(IntegrityError, match="FOREIGN KEY"):
            await orphan_trade()
    finally:
        await database.close()


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgres://u:p@db:5432/app", "postgresql+psycopg://u:p@db:5432/app"),
        ("postgresql://u@db/app", "postgresql+psycopg://u@db/app"),
        ("postgresql+psycopg://u@db/app", "postgresql+psycopg://u@db/app"),
        ("sqlite:///var/users.db", "sqlite+aiosqlite:///var/users.db"),
        ("sqlite+aiosqlite:///var/users.db", "sqlite+aiosqlite:///var/users.db"),
    ],
)
def test_usual_url_spellings_pick_the_async_drivers(given: str, used: str) -> None:
    assert normalize_url(given) == used


async def test_a_pooled_connection_dropped_while_idle_is_replaced_and_a_busy_one_not_pinged(
    postgres_url: str,
) -> None:
    """What a PostgreSQL restart does to a pool: the server ends its connections. One that sat
    idle is pinged before use and replaced, so the next transaction works; one used back to
    back is not pinged (each ping was a round trip and a transaction of its own)."""
    db = Database(postgres_url)
    name = postgres_url.rsplit("/", 1)[1]

    def asked(query: str) -> int:
        """A number the server tells about this test's database."""
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_stat_clear_snapshot()")
            found = admin.execute(query, (name,)).fetchone()
        return int(found[0]) if found and found[0] is not None else 0

    sessions = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
    commits = "SELECT xact_commit FROM pg_stat_database WHERE datname = %s"
    end_sessions = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()"
    )

    try:
        async with db.transaction() as session:
            assert await session.scalar(text("SELECT 1")) == 1
        assert await asyncio.to_thread(asked, end_sessions) >= 1
        await asyncio.sleep(PING_IF_IDLE + 0.2)
        async with db.transaction() as session:  # pinged, found dead, replaced
            assert await session.scalar(text("SELECT 2")) == 2
    finally:
        await db.close()

    # Back to back: one transaction, one commit (a ping on every checkout made it two).
    db = Database(postgres_url)
    try:
        async with db.transaction() as session:
            await session.scalar(text("SELECT 1"))
    finally:
        await db.close()  # a session's statistics reach the server as it ends
    await until(lambda: asked(sessions) == 0, "the first pool's sessions ended")
    await asyncio.sleep(0.5)
    before = asked(commits)
    db = Database(postgres_url)
    try:
        for _ in range(40):
            async with db.transaction() as session:
                await session.scalar(text("SELECT 1"))
    finally:
        await db.close()
    await until(lambda: asked(sessions) == 0, "the pool's sessions ended")
    await until(lambda: asked(commits) - before >= 40, "the sessions' statistics")
    assert asked(commits) - before < 50


async def failure_of(work: Awaitable[object]) -> BaseException:
    """The error `work` fails with (it must fail)."""
    try:
        await work
    except Exception as error:
        return error
    raise AssertionError("expected a failure")


def in_circle(database: Database, first: str, second: str, both_in: asyncio.Barrier) -> Any:
    """A transaction that adds 1 to counter `first`, then (its first run waiting until the
    other transaction has changed its own first) to `second`: two in the other order wait for
    each other in a circle, which PostgreSQL breaks by cancelling one (40P01)."""
    runs: list[int] = []

    async def work(session: AsyncSession) -> int:
        runs.append(len(runs) + 1)
        for number, name in enumerate((first, second)):
            await session.execute(
                text("UPDATE counters SET value = value + 1 WHERE name = :n"), {"n": name}
            )
            if number == 0 and len(runs) == 1:
                await both_in.wait()
        return len(runs)

    return work


async def test_a_transaction_that_loses_a_deadlock_runs_again_and_each_commits_once(
    database: Database, database_url: str
) -> None:
    if is_sqlite(database_url):
        pytest.skip("SQLite's writers queue at BEGIN: they never hold rows in a circle")
    async with database.transaction() as session:
        await session.execute(text("INSERT INTO counters VALUES ('cash', 0)"))
    both_in = asyncio.Barrier(2)
    runs = await asyncio.gather(
        database.run_in_transaction(in_circle(database, "trades", "cash", both_in)),
        database.run_in_transaction(in_circle(database, "cash", "trades", both_in)),
    )
    assert sorted(runs) == [1, 2]  # the one PostgreSQL cancelled ran again
    assert (await value_of(database), await value_of(database, "cash")) == (2, 2)


async def test_a_serialization_failure_runs_again_and_sees_the_other_commit(
    database: Database, database_url: str
) -> None:
    """Two SERIALIZABLE transactions each read every counter and add a counter holding the
    sum: each depends on what the other writes, so one fails (40001) and runs again, seeing
    the other's row."""
    if is_sqlite(database_url):
        pytest.skip("SQLite's transactions never fail to serialize: they queue")
    both_read = asyncio.Barrier(2)
    seen: dict[str, list[int]] = {"a": [], "b": []}

    def adding(name: str) -> Any:
        async def work(session: AsyncSession) -> None:
            await session.execute(text("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"))
            total = int(await session.scalar(text("SELECT count(*) FROM counters")) or 0)
            seen[name].append(total)
            if len(seen[name]) == 1:
                await both_read.wait()
            await session.execute(
                text("INSERT INTO counters VALUES (:n, :v)"), {"n": name, "v": total}
            )

        return work

    await asyncio.gather(
        database.run_in_transaction(adding("a")), database.run_in_transaction(adding("b"))
    )
    assert sorted(map(tuple, seen.values())) == [(1,), (1, 2)]
    assert {await value_of(database, "a"), await value_of(database, "b")} == {1, 2}


async def test_only_a_database_that_cannot_be_reached_is_unreachable(postgres_url: str) -> None:
    """What PostgreSQL and its driver really raise: a connection refused, a database that takes
    no connections, a connection its server ended are outages; a deadlock and a serialization
    failure are conflicts (run again; ABORTED at last); a statement cancelled by the operator's
    statement_timeout is a database too busy now (UNAVAILABLE, as an outage: never a 500); a
    broken query is neither (it answers INTERNAL)."""
    db = Database(postgres_url)
    name = postgres_url.rsplit("/", 1)[1]
    nowhere = Database("postgresql://postgres@127.0.0.1:1/nothing")
    try:
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE counters (name TEXT PRIMARY KEY, value INT)"))
            await session.execute(text("INSERT INTO counters VALUES ('trades', 0), ('cash', 0)"))
        both_in = asyncio.Barrier(2)
        circle = await asyncio.gather(
            db.run_in_transaction(in_circle(db, "trades", "cash", both_in), runs=1),
            db.run_in_transaction(in_circle(db, "cash", "trades", both_in), runs=1),
            return_exceptions=True,
        )
        deadlock = next(e for e in circle if isinstance(e, BaseException))

        async def timed_out() -> None:
            async with db.transaction() as session:
                await session.execute(text("SET LOCAL statement_timeout = 50"))
                await session.execute(text("SELECT pg_sleep(1)"))

        async def broken() -> None:
            async with db.transaction() as session:
                await session.execute(text("SELECT nonsense FROM nowhere"))

        async def ended() -> None:
            async with db.transaction() as session:
                await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

        refused = await failure_of(nowhere.ping())
        lost = await failure_of(ended())
        with connections_refused(name):
            closed = await failure_of(db.ping())
        busy = await failure_of(timed_out())
        others = [await failure_of(broken())]
    finally:
        await db.close()
        await nowhere.close()

    for outage in (refused, lost, closed, busy):
        assert database_unreachable(outage) and not database_conflict(outage), outage
    assert database_conflict(deadlock) and not database_unreachable(deadlock), deadlock
    for error in others:
        assert not database_unreachable(error) and not database_conflict(error), error


async def test_sqlite_busy_is_a_conflict_and_a_file_it_cannot_open_an_outage(
    tmp_path: Path,
) -> None:
    file = tmp_path / "a.db"
    db = Database(f"sqlite:///{file}")
    (tmp_path / "folder").mkdir()
    unopenable = Database(f"sqlite:///{tmp_path / 'folder'}")  # a folder, not a database

    async def broken() -> None:
        async with db.transaction() as session:
            await session.execute(text("SELECT * FROM nowhere"))

    try:
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE t (x INT)"))
        holder = sqlite3.connect(file, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process's writer, holding on
            busy = await failure_of(quick_write(file))
        finally:
            holder.close()
        cannot_open = await failure_of(unopenable.ping())
        no_table = await failure_of(broken())
    finally:
        await db.close()
        await unopenable.close()
    assert database_conflict(busy) and not database_unreachable(busy), busy
    assert database_unreachable(cannot_open) and not database_conflict(cannot_open)
    assert not database_unreachable(no_table) and not database_conflict(no_table)


async def quick_write(file: Path) -> None:
    """A write to SQLite `file` that gives up on its lock at once (no 30 s busy timeout)."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{file}", connect_args={"timeout": 0})
    try:
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        await engine.dispose()
