"""Async SQLAlchemy: one engine per service and a unit of work that owns each transaction."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


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


def database_unreachable(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached now (refused, restarting, a lost
    connection): a failure of the moment, worth a retry, not a fault of the request."""
    if isinstance(error, (OperationalError, InterfaceError)):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


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
