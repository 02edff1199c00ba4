"""The unit of work on real databases: commit on success, roll back on an exception, and on
SQLite, writers that queue rather than fail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, select, text, update
from sqlalchemy.exc import IntegrityError

from services.runtime.db import PING_IF_IDLE, Database, is_sqlite, normalize_url
from tests.conftest import POSTGRES_ADMIN_URL
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
