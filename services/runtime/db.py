"""Async SQLAlchemy: one engine per service and a unit of work that owns each transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


def normalize_url(url: str) -> str:
    """Accept the usual spellings and pick our async drivers (psycopg 3, aiosqlite)."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    return url


def _prepare_sqlite(engine: AsyncEngine, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(connection: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below), so the driver must not.
        connection.isolation_level = None
        # WAL lets readers run beside a writer; the busy timeout queues writers instead of
        # failing them; foreign keys are off by default in SQLite.
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)


# A pooled connection is pinged before use only once it has sat idle this long: a database that
# restarted meanwhile dropped it, and a ping finds that out before a request's statement does.
# Under load connections come back within milliseconds, and a ping on every checkout (what
# pool_pre_ping does) cost a round trip and about 150 µs of CPU a transaction (measured).
PING_IF_IDLE = 1.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    dialect = engine.dialect

    @event.listens_for(engine.sync_engine.pool, "connect")
    def on_connect(_connection: Any, record: Any) -> None:
        record.info.pop("idle_since", None)  # just connected: nothing to check

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def on_checkin(_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def on_checkout(connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_IF_IDLE:
            return
        try:
            dialect.do_ping(connection)
        except Exception as error:
            # The pool throws this connection away and checks out another (a fresh one).
            raise DisconnectionError("a pooled connection did not answer its ping") from error


# PostgreSQL's SQLSTATEs for a database that cannot take the request now: the connection
# refused, lost or broken (class 08), the server shutting down, crashed or still starting
# (57P01-57P03), out of resources (class 53: connections, disk, memory), or a statement
# cancelled by the operator's statement_timeout (57014: an overloaded database, worth a retry,
# not a fault of the request: never a 500).
_UNREACHABLE_SQLSTATES = ("08", "53", "57014", "57P01", "57P02", "57P03")
# SQLite's for the same: the file cannot be opened or read or written, or its disk is full.
_UNREACHABLE_SQLITE = ("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_FULL")
# Two transactions in each other's way, one rolled back whole (nothing of it written):
# PostgreSQL's serialization failure and deadlock.
_CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})
# SQLite's write lock still held by another connection once the busy timeout has waited.
_CONFLICT_SQLITE = ("SQLITE_BUSY", "SQLITE_LOCKED")


def database_unreachable(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached or take the request now (refused,
    restarting, a lost connection, no connection, disk or memory left, a statement cancelled by
    its timeout): a failure of the moment, worth a retry, not a fault of the request.

    Only those: a deadlock, a serialization failure and a broken query are answers of a
    database that is there (`database_conflict` tells the first two)."""
    if isinstance(error, DisconnectionError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    driver = error.orig
    if isinstance(driver, sqlite3.Error):
        return getattr(driver, "sqlite_errorname", "").startswith(_UNREACHABLE_SQLITE)
    sqlstate: str | None = getattr(driver, "sqlstate", None)
    if sqlstate is None:
        # No SQLSTATE: no server answered (refused, not accepting connections, lost midway);
        # a driver's own complaint about a query is a ProgrammingError or a DataError.
        return isinstance(error, (OperationalError, InterfaceError))
    return sqlstate.startswith(_UNREACHABLE_SQLSTATES)


def database_conflict(error: BaseException) -> bool:
    """Whether `error` says the transaction lost to another one: a serialization failure or a
    deadlock on PostgreSQL, SQLite's write lock held elsewhere past its busy timeout. Its
    transaction was rolled back whole; run again, it can pass (see `run_in_transaction`)."""
    if not isinstance(error, DBAPIError) or error.connection_invalidated:
        return False
    driver = error.orig
    if isinstance(driver, sqlite3.Error):
        return getattr(driver, "sqlite_errorname", "").startswith(_CONFLICT_SQLITE)
    return getattr(driver, "sqlstate", None) in _CONFLICT_SQLSTATES


def _worth_another_run(error: BaseException) -> bool:
    """A conflict PostgreSQL answered at once. SQLite's busy error comes after its busy timeout
    (30 s) has waited already: running again would hold the caller for as long again."""
    return database_conflict(error) and not isinstance(getattr(error, "orig", None), sqlite3.Error)


# A transaction that lost to another runs again, at most this many times in all, after a
# pause of about 10, 20, 40 ms (each between half of it and all of it, at random, so that
# two that met once do not meet again in step).
CONFLICT_RUNS = 4
CONFLICT_PAUSE = 0.01


def is_sqlite(url: str) -> bool:
    return make_url(normalize_url(url)).get_backend_name() == "sqlite"


def create_engine(url: str, *, pool_size: int = 10, sqlite_begin: str = "BEGIN") -> AsyncEngine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _prepare_sqlite(engine, sqlite_begin)
        return engine
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)
    _ping_when_idle(engine)
    return engine


class Database:
    """Owns the engines; `transaction()` is the unit of work: commit on success, else roll back.

    On SQLite, writing transactions take the write lock at BEGIN (BEGIN IMMEDIATE), so
    read-then-write transactions queue behind each other instead of failing to upgrade; reads
    (`reading()`) use a second engine with plain BEGIN and run beside a writer (WAL).
    """

    def __init__(self, url: str) -> None:
        # SQLite has one writer at a time, and its busy handler lets newcomers overtake writers
        # that have waited longest (measured: trade p99 1.4 s at c32, portfolios unevenly
        # served). Queuing this process's writers in order first gave p99 ~180 ms, same rate.
        self._writers: asyncio.Lock | None = asyncio.Lock() if is_sqlite(url) else None
        if is_sqlite(url):
            self.engine = create_engine(url, sqlite_begin="BEGIN IMMEDIATE")
            self._reader = create_engine(url)
        else:
            self.engine = self._reader = create_engine(url)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(self._reader, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with contextlib.AsyncExitStack() as stack:
            if self._writers is not None:
                await stack.enter_async_context(self._writers)
            session = await stack.enter_async_context(self._sessions())
            await stack.enter_async_context(session.begin())
            yield session

    async def run_in_transaction(
        self, work: Callable[[AsyncSession], Awaitable[T]], *, runs: int = CONFLICT_RUNS
    ) -> T:
        """`work` in a transaction of its own (`transaction()`), run again from the start when
        it loses to another transaction (`database_conflict`: rolled back whole, nothing of it
        written), `runs` times at most, after a short pause at random; the last conflict is
        raised (answered ABORTED: retry later). `work` must do nothing but its statements
        (no files, no state of its caller's): it may run more than once."""
        for run in range(1, runs + 1):
            try:
                async with self.transaction() as tx:
                    return await work(tx)
            except DBAPIError as error:
                if run == runs or not _worth_another_run(error):
                    raise
                sqlstate = getattr(error.orig, "sqlstate", None)
                log.info(
                    "a transaction lost to another; running it again",
                    extra={"sqlstate": sqlstate, "run": run},
                )
            await asyncio.sleep(CONFLICT_PAUSE * 2 ** (run - 1) * random.uniform(0.5, 1.0))
        raise AssertionError("not reached: the last run returns or raises")

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        async with self._read_sessions() as session, session.begin():
            yield session

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        """A read transaction that sees one moment throughout, for reads of several statements
        that must agree: REPEATABLE READ on PostgreSQL (READ COMMITTED, its default, sees each
        statement's own moment); SQLite's read transaction already does (WAL)."""
        async with self.reading() as session:
            if self.dialect == "postgresql":
                await session.execute(
                    text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                )
            yield session

    async def ping(self) -> bool:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True

    async def close(self) -> None:
        await self.engine.dispose()
        if self._reader is not self.engine:
            await self._reader.dispose()
