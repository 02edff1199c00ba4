"""Fixtures shared by every test: real databases, real caches, test configs, real servers.

PostgreSQL and Redis are used for real. When one does not answer, its tests skip with the
reason, unless STOCKFOLIO_REQUIRE_SERVERS=1 (CI), when they fail.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
import redis
from stockfolio.users.v1 import users_pb2_grpc

from services.runtime.auth import ServiceCredentials, ServiceTokenSigner, TokenCodec
from services.runtime.cache import Cache
from services.runtime.config import RuntimeConfig, load_runtime_config
from services.runtime.keys import SERVICE_TOKEN_ISSUERS, SigningKey, TokenKeys
from services.runtime.local_cache import InProcessCache
from services.runtime.migrations import upgrade
from services.runtime.redis_cache import RedisCache

# Fixtures that several folders' tests share, beside the helpers their tests import.
pytest_plugins = (
    "tests.integration.alpha_vantage_harness",
    "tests.integration.assistant_harness",
    "tests.integration.facade_harness",
    "tests.integration.order_harness",
    "tests.integration.portfolio_harness",
    "tests.integration.terminal_harness",
    "tests.integration.workspace_harness",
)

POSTGRES_ADMIN_URL = os.environ.get(
    "STOCKFOLIO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# Each pytest-xdist worker flushes a database of its own (gw0 15, gw1 14, ...; 12 is the
# terminal replica tests' own), so parallel workers never flush each other's keys, and names
# its keys and channels with a namespace of its own (pub/sub channels are server-wide: another
# worker's events and market steps would reach its subscribers).
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_REDIS_DB = (15, 14, 13, 11, 10, 9, 8, 7)[_WORKER % 8]
REDIS_DATABASE_URL = os.environ.get("STOCKFOLIO_TEST_REDIS", f"redis://127.0.0.1:6379/{_REDIS_DB}")
REDIS_TEST_URL = f"{REDIS_DATABASE_URL}?namespace=test-gw{_WORKER}"
REQUIRE_SERVERS = os.environ.get("STOCKFOLIO_REQUIRE_SERVERS") == "1"
# The users service's signing key and the facade's service-token key, one pair each per run,
# and every other service-token issuer's (the services that follow account deletions).
TEST_USER_KEY = SigningKey.generate()
TEST_SERVICE_KEY = SigningKey.generate()
TEST_ISSUER_KEYS = {
    issuer: TEST_SERVICE_KEY if issuer == "facade" else SigningKey.generate()
    for issuer in SERVICE_TOKEN_ISSUERS
}
_key_files: dict[str, Path] = {}


def _private_key_file(name: str, key: SigningKey) -> Path:
    """`key` written once per run to a 0600 file in a 0700 folder, as production mounts it."""
    if not _key_files:
        folder = Path(tempfile.mkdtemp(prefix="stockfolio-test-keys-"))
        atexit.register(shutil.rmtree, folder, True)
        _key_files["folder"] = folder
    path = _key_files.get(name)
    if path is None:
        path = _key_files["folder"] / name
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(key.private_pem())
        _key_files[name] = path
    return path


def token_environment(service: str) -> dict[str, str]:
    """The key variables `service` runs with in tests: every public half, and a private key only
    for its owner (users signs users' tokens, each service-token issuer its own service
    tokens)."""
    environ = {"TOKEN_PUBLIC_KEYS": TEST_USER_KEY.public_pem()}
    for issuer, key in TEST_ISSUER_KEYS.items():
        environ[f"{issuer.upper()}_SERVICE_PUBLIC_KEYS"] = key.public_pem()
        if service == issuer:
            environ[f"{issuer.upper()}_SERVICE_KEY_FILE"] = str(
                _private_key_file(f"{issuer}.pem", key)
            )
    if service == "users":
        environ["TOKEN_PRIVATE_KEY_FILE"] = str(_private_key_file("users.pem", TEST_USER_KEY))
    return environ


def service_credentials(issuer: str, audience: str = "users") -> ServiceCredentials:
    """`issuer`'s service token for `audience`, as that service sends it in tests."""
    return ServiceCredentials(
        ServiceTokenSigner(TEST_ISSUER_KEYS[issuer], service=issuer), audience
    )


def users_codec(*, access_ttl: int = 900, key: SigningKey = TEST_USER_KEY) -> TokenCodec:
    """Signs users' tokens as the users service does in tests (another `key`: a forger)."""
    keys = TokenKeys(users={key.kid: key.public}, signing=key)
    return TokenCodec(keys, issuer="stockfolio", access_ttl=access_ttl)


def facade_credentials(audience: str = "portfolio") -> ServiceCredentials:
    """The facade's service token for `audience`, as the facade sends it in tests."""
    return ServiceCredentials(ServiceTokenSigner(TEST_SERVICE_KEY, service="facade"), audience)


def _absent(what: str, error: Exception) -> None:
    message = f"{what} is not reachable: {error}"
    if REQUIRE_SERVERS:
        pytest.fail(f"{message} (STOCKFOLIO_REQUIRE_SERVERS=1)")
    pytest.skip(message)


def postgres_available() -> Exception | None:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=2):
            return None
    except psycopg.Error as error:
        return error


class PooledDatabases:
    """This test process's PostgreSQL databases: each made once, and emptied after every test
    that used it rather than dropped. PostgreSQL's DROP DATABASE forces a checkpoint (1.5 to
    2 s on a loaded machine, for each database of each test: most of a PostgreSQL test's time).

    Emptied is as good as new for a test: every connection to it ended (as DROP DATABASE ...
    WITH (FORCE) did), then its one schema, public, dropped and made again, and with it every
    table, index, type, sequence and alembic's version (the migrations make nothing outside
    it). Dropped for good when the test process ends."""

    def __init__(self) -> None:
        self.made: set[str] = set()
        self.free: list[str] = []  # databases for postgres_url, empty

    def take(self) -> str:
        """The name of an empty database for one test's postgres_url."""
        if self.free:
            return self.free.pop()
        name = f"sf_test_{uuid.uuid4().hex[:12]}"
        self.make(name)
        return name

    def give_back(self, name: str) -> None:
        if self.empty(name):
            self.free.append(name)

    def make(self, name: str) -> None:
        """`name`, empty: made unless this process made it already (then emptied since)."""
        if name not in self.made:
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            self.made.add(name)

    def empty(self, name: str) -> bool:
        """Empties `name` for the next test; drops it instead if that fails."""
        try:
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
            with psycopg.connect(_admin_url(name), autocommit=True) as database:
                database.execute("DROP SCHEMA public CASCADE")
                database.execute("CREATE SCHEMA public")
        except psycopg.Error:
            self.drop(name)
            return False
        return True

    def drop(self, name: str) -> None:
        self.made.discard(name)
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_all(self) -> None:
        self.free.clear()
        for name in sorted(self.made):
            self.drop(name)


TEST_DATABASES = PooledDatabases()


def _admin_url(database: str) -> str:
    """The admin's URL for `database` (psycopg's form)."""
    return f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{database}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The databases this test process made, dropped as it ends."""
    if TEST_DATABASES.made:
        TEST_DATABASES.drop_all()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database for one test, emptied afterwards (see PooledDatabases)."""
    problem = postgres_available()
    if problem is not None:
        _absent("PostgreSQL", problem)
    name = TEST_DATABASES.take()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    finally:
        TEST_DATABASES.give_back(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


# `pytestmark = SQLITE_ONLY`: a module's tests run once, on SQLite, where what they test does not
# depend on the storage engine (the parameter of database_url, chosen by the module).
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every storage test runs on both databases."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database flushed before and after the test."""
    client = redis.Redis.from_url(REDIS_DATABASE_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as error:
        _absent("Redis", error)
    try:
        yield REDIS_TEST_URL
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(params=["inprocess", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    """Every cache test runs on both backends."""
    if request.param == "inprocess":
        backend: Cache = InProcessCache()
    else:
        backend = RedisCache(str(request.getfixturevalue("redis_url")), prefix="sftest:")
    try:
        yield backend
    finally:
        await backend.close()


class ManualClock:
    """A monotonic clock that moves only when told: time without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["inprocess", "redis"])
async def timed_cache(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Cache, Callable[[float], Awaitable[None]]]]:
    """A cache and a way to let `seconds` pass: the in-process cache runs on a manual clock;
    Redis expires keys on its own clock, so there time really passes."""
    if request.param == "inprocess":
        clock = ManualClock()
        backend: Cache = InProcessCache(clock=clock)

        async def advance(seconds: float) -> None:
            clock.now += seconds

    else:
        backend = RedisCache(str(request.getfixturevalue("redis_url")), prefix="sftest:")

        async def advance(seconds: float) -> None:
            await asyncio.sleep(seconds)

    try:
        yield backend, advance
    finally:
        await backend.close()


def free_port() -> int:
    """A free port below the ephemeral range (see FIELD-NOTES.md), for subprocess servers."""
    for _ in range(200):
        port = 20000 + int.from_bytes(os.urandom(2), "big") % 12000
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., RuntimeConfig]:
    """Build a service's RuntimeConfig as the environment would, for a test.

    Keyword arguments are environment variables (e.g. `USERS_ADDRS="127.0.0.1:5555"`).
    """

    def build(service: str, **environ: str) -> RuntimeConfig:
        base = {
            "STOCKFOLIO_ENV": "test",
            "STOCKFOLIO_VAR_DIR": str(tmp_path / "var"),
            "LOG_LEVEL": "WARNING",
            f"{service.upper()}_PORT": "0",
            **token_environment(service),
        }
        return load_runtime_config(service, {**base, **environ})

    return build


@pytest.fixture
def users_database(database_url: str) -> str:
    """A migrated users database, on SQLite and on PostgreSQL."""
    from services.runtime.migrations import upgrade

    upgrade("users", database_url)
    return database_url


@pytest.fixture
async def users_service(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> AsyncIterator[RuntimeConfig]:
    """A real users gRPC server on a free port; yields its config (addresses filled in)."""
    from services.runtime.server import running
    from services.users.server import build

    config = make_config("users", USERS_DATABASE_URL=users_database, BCRYPT_COST="4")
    async with running(config, build, port=0, grace=0) as service:
        yield make_config(
            "users",
            USERS_DATABASE_URL=users_database,
            BCRYPT_COST="4",
            USERS_ADDRS=f"127.0.0.1:{service.port}",
        )


@contextlib.asynccontextmanager
async def users_server(
    make_config: Callable[..., RuntimeConfig], url: str, cost: str = "4", **environ: str
) -> AsyncIterator[users_pb2_grpc.UsersServiceStub]:
    """A real users gRPC server over the database at `url`, on a free port; a stub to call it.

    `cost` is bcrypt's (4, the cheapest, unless a test needs a login's check to take as long as
    production's); `environ` adds variables to the server's environment."""
    from services.runtime.server import running
    from services.users.server import build as build_users

    config = make_config("users", USERS_DATABASE_URL=url, BCRYPT_COST=cost, **environ)
    async with (
        running(config, build_users, port=0, grace=0) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        yield users_pb2_grpc.UsersServiceStub(channel)


def migrated_sqlite(service: str, file: Path) -> str:
    """The URL of a SQLite database at `file`, migrated to `service`'s newest schema."""
    url = f"sqlite+aiosqlite:///{file}"
    upgrade(service, url)
    return url


@contextlib.contextmanager
def connections_refused(name: str) -> Iterator[None]:
    """The PostgreSQL database `name` down for the block: it takes no new connection and every
    open one is ended; it takes connections again after, however the block ends."""
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
    try:
        yield
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


@contextlib.contextmanager
def service_database(service: str, database_url: str, tmp_path: Path) -> Iterator[str]:
    """A migrated database of `service`'s own, on the engine `database_url` names."""
    if database_url.startswith("sqlite"):
        yield migrated_sqlite(service, tmp_path / f"{service}.db")
        return
    # Named after the test's own database, which no other test holds meanwhile: made by the
    # first test that held that one, emptied after each (see PooledDatabases).
    name = f"{database_url.rsplit('/', 1)[1]}_{service}"
    TEST_DATABASES.make(name)
    url = f"{database_url.rsplit('/', 1)[0]}/{name}"
    try:
        upgrade(service, url)
        yield url
    finally:
        TEST_DATABASES.empty(name)
