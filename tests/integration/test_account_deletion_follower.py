"""The follower every service runs (services/runtime/account_deletions.py) against a real users
service: each deleted account is purged once its deletion is read, the cursor in the service's
own database moves past a deletion only after its purge returned, a purge that fails is tried
again from the same place, and among replicas sharing a cache one follows at a time."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from sqlalchemy import MetaData
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.account_deletions import (
    CacheLease,
    DatabaseCursor,
    DeletionFollower,
    MemoryCursor,
    RemoteDeletions,
    account_purge_cursor_table,
)
from services.runtime.config import RuntimeConfig
from services.runtime.db import Database
from services.runtime.local_cache import InProcessCache
from services.runtime.server import running
from services.users.server import build as build_users
from tests.conftest import service_credentials
from tests.waiting import until

PASSWORD = "correct-horse-9"


@contextlib.asynccontextmanager
async def users_on(
    make_config: Callable[..., RuntimeConfig], url: str
) -> AsyncIterator[tuple[users_pb2_grpc.UsersServiceStub, grpc.aio.Channel]]:
    config = make_config("users", USERS_DATABASE_URL=url, BCRYPT_COST="4")
    async with (
        running(config, build_users, port=0, grace=0) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        yield users_pb2_grpc.UsersServiceStub(channel), channel


async def delete_new_account(stub: users_pb2_grpc.UsersServiceStub, email: str) -> str:
    """A new account, deleted by its owner; its id."""
    signed = await stub.Register(users_pb2.RegisterRequest(email=email, password=PASSWORD))
    await stub.DeleteUser(
        users_pb2.DeleteUserRequest(id=signed.user.id, current_password=PASSWORD),
        metadata=(("authorization", f"Bearer {signed.tokens.access_token}"),),
    )
    return str(signed.user.id)


@pytest.fixture
async def cursor_database(database_url: str) -> AsyncIterator[tuple[Database, DatabaseCursor]]:
    """A service database holding only the cursor's table, on SQLite and PostgreSQL."""
    metadata = MetaData()
    table = account_purge_cursor_table(metadata)
    db = Database(database_url)
    async with db.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    try:
        yield db, DatabaseCursor(db, table)
    finally:
        await db.close()


class Recording:
    """A purge that records each user id it is given, and fails for those in `failing`."""

    def __init__(self) -> None:
        self.purged: list[str] = []
        self.failing: set[str] = set()

    async def __call__(self, user_id: str) -> None:
        if user_id in self.failing:
            raise RuntimeError(f"cannot purge {user_id} now")
        self.purged.append(user_id)


async def test_the_cursor_moves_past_a_deletion_only_once_its_purge_succeeded(
    make_config: Callable[..., RuntimeConfig],
    users_database: str,
    cursor_database: tuple[Database, DatabaseCursor],
) -> None:
    _, cursor = cursor_database
    async with users_on(make_config, users_database) as (stub, channel):
        await stub.Register(users_pb2.RegisterRequest(email="ann@example.com", password=PASSWORD))
        first = await delete_new_account(stub, "bob@example.com")
        second = await delete_new_account(stub, "cid@example.com")
        third = await delete_new_account(stub, "dee@example.com")
        deletions = RemoteDeletions(channel, service_credentials("workspace"), deadline=5.0)
        purge = Recording()
        purge.failing = {second}
        follower = DeletionFollower(deletions, cursor, purge, interval=0.05, batch=2)
        with pytest.raises(RuntimeError, match="cannot purge"):
            await follower.round()
        # The first is purged and passed; the failed one, and all after it, wait.
        assert purge.purged == [first]
        assert await cursor.read() == 1
        with pytest.raises(RuntimeError):
            await follower.round()
        assert (purge.purged, await cursor.read()) == ([first], 1), "tried again, not skipped"
        purge.failing.clear()
        assert await follower.round() == 2  # two batches: [second, third], then none
        assert purge.purged == [first, second, third]
        assert await cursor.read() == 3
        assert await follower.round() == 0, "nothing is purged twice by one follower"
        # A deletion after is picked up where the cursor stands, by a new follower too (the
        # cursor is the database's, not the process's).
        fourth = await delete_new_account(stub, "eve@example.com")
        again = Recording()
        restarted = DeletionFollower(deletions, cursor, again, interval=0.05)
        assert await restarted.round() == 1
        assert again.purged == [fourth]


async def test_a_running_follower_retries_a_failing_purge_until_it_passes(
    make_config: Callable[..., RuntimeConfig],
    users_database: str,
    cursor_database: tuple[Database, DatabaseCursor],
) -> None:
    _, cursor = cursor_database
    async with users_on(make_config, users_database) as (stub, channel):
        await stub.Register(users_pb2.RegisterRequest(email="ann@example.com", password=PASSWORD))
        gone = await delete_new_account(stub, "bob@example.com")
        purge = Recording()
        purge.failing = {gone}
        deletions = RemoteDeletions(channel, service_credentials("assistant"), deadline=5.0)
        follower = DeletionFollower(deletions, cursor, purge, interval=0.05)
        follower.start()
        try:
            await until(lambda: follower.rounds >= 3, "three failed rounds")
            assert (purge.purged, await cursor.read()) == ([], 0)
            purge.failing.clear()
            await until(lambda: purge.purged == [gone], "the purge once it passes")
            await until(lambda: follower.rounds >= 6, "more rounds")
            assert purge.purged == [gone], "purged once"
            assert await cursor.read() == 1
        finally:
            await follower.stop()


async def test_a_cursor_never_moves_back(
    cursor_database: tuple[Database, DatabaseCursor],
) -> None:
    """Two replicas advancing at once (a lease that could not be taken): the higher stays."""
    _, cursor = cursor_database
    assert await cursor.read() == 0
    await cursor.advance(5)
    await cursor.advance(3)
    assert await cursor.read() == 5
    memory = MemoryCursor()
    await memory.advance(5)
    await memory.advance(3)
    assert await memory.read() == 5


async def test_replicas_sharing_a_cache_follow_one_at_a_time(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    cache = InProcessCache()
    async with users_on(make_config, users_database) as (stub, channel):
        await stub.Register(users_pb2.RegisterRequest(email="ann@example.com", password=PASSWORD))
        gone = await delete_new_account(stub, "bob@example.com")
        deletions = RemoteDeletions(channel, service_credentials("portfolio"), deadline=5.0)
        purges = [Recording(), Recording()]
        leases = [CacheLease(cache, "account-deletions:lease", 10.0) for _ in purges]
        followers = [
            DeletionFollower(deletions, MemoryCursor(), purge, interval=0.05, lease=lease)
            for purge, lease in zip(purges, leases, strict=True)
        ]
        assert await followers[0].round() == 1
        assert await followers[1].round() == 0, "the other replica holds the lease"
        assert (purges[0].purged, purges[1].purged) == ([gone], [])
        await followers[0].stop()  # gives the lease up
        assert await followers[1].round() == 1
        assert purges[1].purged == [gone]
        await followers[1].stop()
    await cache.close()
