"""What the fault tests share: a PostgreSQL cluster and a Redis of their own (faults stop them,
so never the shared ones), the system's processes started one by one (a fault kills one, which
honcho would answer by stopping all), a client with timings, a steady load, and the results
table."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import psycopg
import redis

from tests.system_harness import (
    HOST,
    REPO,
    ROUTE_OF,
    UNREACHED,
    Ports,
    free_ports,
    migrate,
    system_environment,
)

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
# PostgreSQL's binaries refuse to run as root: they run as the `postgres` user, on a data
# folder it owns, in a temporary folder of the test's own.
PG_USER = "postgres"
MIGRATED = ("users", "assistant", "workspace", "portfolio")
Scenario = TypeVar("Scenario")  # what a fault scenario recorded


# -- the results table ------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultResult:
    """One row: what broke, under what load, how many requests, how many failed, and how long
    clients waited from the repair (or the fault) to the first success."""

    fault: str
    load: str
    requests: int
    failures: int
    recovery: float | None
    note: str = ""


# Every row recorded in this run; the suite's conftest prints and writes them at the end.
RESULTS: list[FaultResult] = []


def results_table(rows: Sequence[FaultResult]) -> str:
    lines = [
        "| fault | load | requests | failures | recovery | note |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        recovery = "-" if row.recovery is None else f"{row.recovery:.2f} s"
        lines.append(
            f"| {row.fault} | {row.load} | {row.requests} | {row.failures} | {recovery} "
            f"| {row.note} |"
        )
    return "\n".join(lines)


# -- PostgreSQL and Redis of the test's own ----------------------------------------------------


def _postgres_bin() -> Path:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name.split(".")[0])
    )
    if not found:
        raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
    return found[-1]


class PrivatePostgres:
    """A cluster in a temporary folder, on a free port: initdb, pg_ctl start/stop/restart."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.data = root / "data"
        self._bin = _postgres_bin()

    @classmethod
    def create(cls) -> PrivatePostgres:
        root = Path(tempfile.mkdtemp(prefix="stockfolio-faults-pg-"))
        shutil.chown(root, PG_USER, PG_USER)
        (port,) = free_ports(1)
        cluster = cls(root, port)
        cluster._run(
            "initdb",
            "-D",
            str(cluster.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        cluster.start()
        return cluster

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["runuser", "-u", PG_USER, "--", str(self._bin / program), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} {args} failed:\n{done.stdout}{done.stderr}")
        return done

    def _pg_ctl(self, action: str, *args: str) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses={HOST} -c fsync=off"
            " -c max_connections=400"
        )
        self._run(
            "pg_ctl",
            action,
            "-w",
            "-t",
            "60",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            *args,
        )

    def start(self) -> None:
        self._pg_ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("stop", "-m", mode)

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def running(self) -> bool:
        done = subprocess.run(
            [
                "runuser",
                "-u",
                PG_USER,
                "--",
                str(self._bin / "pg_ctl"),
                "status",
                "-D",
                str(self.data),
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
        return done.returncode == 0

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/{database}"

    def create_databases(self, names: Sequence[str]) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            for name in names:
                admin.execute(f'CREATE DATABASE "{name}"')

    def service_urls(self) -> dict[str, str]:
        """A database per migrated service (each keeps its own Alembic history), as
        `<SERVICE>_DATABASE_URL` settings."""
        tag = uuid.uuid4().hex[:8]
        names = {service: f"{service}_{tag}" for service in MIGRATED}
        self.create_databases(list(names.values()))
        return {f"{s.upper()}_DATABASE_URL": self.url(n) for s, n in names.items()}

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """`redis-server` on a free port, no persistence; stopped and started again by faults."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start_new(cls, folder: Path) -> PrivateRedis:
        folder.mkdir(parents=True, exist_ok=True)
        (port,) = free_ports(1)
        server = cls(folder, port)
        server.start()
        return server

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        with (self.folder / "server.log").open("ab") as log:
            self._process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    HOST,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.folder),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        client = redis.Redis(host=HOST, port=self.port, socket_connect_timeout=0.5)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.05)
        finally:
            client.close()

    def pause(self) -> None:
        """Stops answering but keeps its data (a pause, a partition): SIGSTOP."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGCONT)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGCONT)  # a paused server could not end
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A cluster of its own, destroyed on the way out."""
    cluster = PrivatePostgres.create()
    try:
        yield cluster
    finally:
        cluster.destroy()


def run_on_private_stores(
    root: Path,
    scenario: Callable[[Path, PrivatePostgres, PrivateRedis], Coroutine[Any, Any, Scenario]],
) -> Scenario:
    """Runs a fault scenario against a PostgreSQL cluster and a Redis of its own (the Redis in
    root/redis), both gone when it ends; what the scenario recorded."""
    with private_postgres() as cluster:
        cache = PrivateRedis.start_new(root / "redis")
        try:
            return asyncio.run(scenario(root, cluster, cache))
        finally:
            cache.stop()


# -- the system, process by process ------------------------------------------------------------


@dataclass
class Process:
    """One process of the system: a replica of a domain service, or the facade."""

    name: str
    module: str
    port: int
    admin_port: int
    log: Path
    environ: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=REPO,
                env=self.environ,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        assert self.popen is not None
        self.popen.send_signal(sig)

    async def wait_exit(self, within: float) -> int:
        assert self.popen is not None
        return await asyncio.to_thread(self.popen.wait, within)

    async def stop(self) -> None:
        if not self.running:
            return
        self.signal(signal.SIGTERM)
        try:
            await self.wait_exit(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Deployment:
    """The domain services a test needs (with replicas), and the facade in front, on free ports
    with the environment `make run` gives; services not started are unreachable addresses."""

    def __init__(
        self, root: Path, replicas: Mapping[str, int], settings: Mapping[str, str]
    ) -> None:
        self.root = root
        names = ("users", "assistant", "terminal", "workspace", "portfolio")
        ports = free_ports(2 * len(names) + 2)
        self.ports = Ports(
            grpc=dict(zip(names, ports[: len(names)], strict=True)),
            admin=dict(zip(names, ports[len(names) : 2 * len(names)], strict=True)),
            facade=ports[-2],
            facade_admin=ports[-1],
        )
        self.environ = system_environment(root / "var", self.ports, settings)
        self.replicas: dict[str, list[Process]] = {}
        for name, count in replicas.items():
            grpc_ports = [self.ports.grpc[name]]
            admin_ports = [self.ports.admin[name]]
            if count > 1:
                more = free_ports(2 * (count - 1))
                grpc_ports += more[: count - 1]
                admin_ports += more[count - 1 :]
            self.environ[f"{name.upper()}_ADDRS"] = ",".join(f"{HOST}:{p}" for p in grpc_ports)
            self.replicas[name] = [
                self._process(name, f"services.{name}", port, admin, index)
                for index, (port, admin) in enumerate(zip(grpc_ports, admin_ports, strict=True))
            ]
        self.facade = self._process(
            "facade", "facade", self.ports.facade, self.ports.facade_admin or 0, 0
        )

    def _process(self, name: str, module: str, port: int, admin: int, index: int) -> Process:
        environ = dict(self.environ)
        environ[f"{name.upper()}_PORT"] = str(port)
        environ[f"{name.upper()}_ADMIN_PORT"] = str(admin)
        log = self.root / f"{name}-{index}.log"
        return Process(name, module, port, admin, log, environ)

    @property
    def url(self) -> str:
        return self.ports.facade_url

    @property
    def processes(self) -> list[Process]:
        return [*(p for group in self.replicas.values() for p in group), self.facade]

    async def start(self) -> None:
        await asyncio.to_thread(migrate, self.environ, [s for s in self.replicas if s in MIGRATED])
        for process in self.processes:
            process.start()
        try:
            await self.wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def wait_ready(self, within: float = STARTUP_TIMEOUT) -> None:
        """Every replica's admin /health says SERVING, and the facade reaches every service
        started (a 401 without a token is the service's own answer)."""
        deadline = time.monotonic() + within
        waiting = "nothing yet"
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                for process in self.processes:
                    if not process.running:
                        raise AssertionError(f"{process.name} exited:\n{process.tail()}")
                waiting = await self._readiness(http)
                if not waiting:
                    return
                await asyncio.sleep(0.2)
        logs = "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.processes)
        raise AssertionError(f"not ready within {within:.0f} s: {waiting}\n{logs}")

    async def _readiness(self, http: aiohttp.ClientSession) -> str:
        try:
            for name, group in self.replicas.items():
                for replica in group:
                    url = f"http://{HOST}:{replica.admin_port}/health"
                    async with http.get(url) as answer:
                        if answer.status != 200:
                            return f"{name} at {replica.address}: {answer.status}"
            for name in self.replicas:
                async with http.get(f"{self.url}{ROUTE_OF[name]}") as answer:
                    if answer.status in UNREACHED:
                        return f"{name} through the facade: {answer.status}"
        except aiohttp.ClientError as error:
            return f"{type(error).__name__}: {error}"
        return ""

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in reversed(self.processes)))


@contextlib.asynccontextmanager
async def deployed(
    root: Path, replicas: Mapping[str, int], settings: Mapping[str, str]
) -> AsyncIterator[Deployment]:
    deployment = Deployment(root, replicas, settings)
    await deployment.start()
    try:
        yield deployment
    finally:
        await deployment.stop()


@contextlib.asynccontextmanager
async def under_load(
    root: Path,
    replicas: Mapping[str, int],
    postgres: PrivatePostgres,
    redis: PrivateRedis,
    **more: str,
) -> AsyncIterator[tuple[Deployment, Client, Load]]:
    """The system deployed in `root` on these stores (`settings_for` them, with `more`), a
    client of its facade, and the Load that records what the clients saw: every fault test's
    set-up."""
    settings = settings_for(postgres.service_urls(), redis.url, **more)
    load = Load()
    async with deployed(root, replicas, settings) as system, client_of(system.url) as client:
        yield system, client, load


def settings_for(
    database_urls: Mapping[str, str], redis_url: str | None, **more: str
) -> dict[str, str]:
    """What every fault test's system runs with: its own databases (and Redis), fast bcrypt,
    limits high enough that the load is never what is refused."""
    settings = {
        **database_urls,
        "BCRYPT_COST": "4",
        "RATE_LIMIT_API": "1000000/minute",
        "RATE_LIMIT_AUTH": "100000/minute",
        # The users service's own budgets: a fault's load logs one account in without pause.
        "LOGINS_PER_ACCOUNT": "0",
        "LOGINS_PER_IP": "0",
        "REFRESHES_PER_ACCOUNT": "0",
        "REGISTRATIONS_PER_IP": "0",
        "USE_MOCK_PRICES": "true",
        "LOG_LEVEL": "WARNING",
        "SHUTDOWN_GRACE": "5",
        **more,
    }
    if redis_url is not None:
        settings["REDIS_URL"] = redis_url
    return settings


# -- a client with timings ---------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]
    elapsed: float


def password_of(email: str) -> str:
    return f"Pw-{email.split('@')[0]}-long-enough"


class Client:
    """HTTP and WebSockets against the facade, every answer timed."""

    def __init__(self, base_url: str, http: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.http = http

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        within: float = 30.0,
    ) -> Answer:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        started = time.monotonic()
        async with self.http.request(
            method,
            f"{self.base_url}{path}",
            json=body,
            headers=sent,
            timeout=aiohttp.ClientTimeout(total=within),
        ) as answer:
            raw = await answer.read()
            elapsed = time.monotonic() - started
            try:
                parsed: Any = await answer.json(content_type=None) if raw else None
            except ValueError:
                parsed = raw.decode(errors="replace")
            return Answer(answer.status, parsed, dict(answer.headers), elapsed)

    async def register(self) -> tuple[str, str]:
        """A fresh account: (user id, access token); its password is `password_of(email)`."""
        tag = uuid.uuid4().hex[:12]
        email = f"faults-{tag}@example.test"
        answer = await self.call(
            "POST",
            "/api/v1/auth/register",
            body={"email": email, "password": password_of(email), "name": f"Faults {tag}"},
        )
        assert answer.status == 201, answer.body
        data = answer.body["data"]
        return data["user"]["id"], data["tokens"]["accessToken"]

    async def socket(self, path: str, token: str) -> aiohttp.ClientWebSocketResponse:
        url = f"{self.base_url.replace('http', 'ws', 1)}{path}?token={token}"
        return await self.http.ws_connect(url, heartbeat=None, autoping=True)

    async def all_pages(self, path: str, token: str) -> list[dict[str, Any]]:
        """Every item of a paginated list route."""
        items: list[dict[str, Any]] = []
        page = 1
        joiner = "&" if "?" in path else "?"
        while True:
            answer = await self.call("GET", f"{path}{joiner}page={page}&limit=100", token=token)
            assert answer.status == 200, answer.body
            items.extend(answer.body["data"])
            if page >= answer.body["pagination"]["totalPages"]:
                return items
            page += 1


@contextlib.asynccontextmanager
async def client_of(base_url: str) -> AsyncIterator[Client]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        yield Client(base_url, http)


# -- a steady load -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    at: float
    status: int
    elapsed: float
    what: str


@dataclass
class Load:
    """What the workers of a steady load saw, request by request (transport errors: 0)."""

    outcomes: list[Outcome] = field(default_factory=list)

    def note(self, what: str, status: int, started: float) -> None:
        now = time.monotonic()
        self.outcomes.append(Outcome(now, status, now - started, what))

    def failed(self, ok: Callable[[Outcome], bool]) -> list[Outcome]:
        return [o for o in self.outcomes if not ok(o)]

    def first_success_after(self, moment: float, what: str | None = None) -> float | None:
        """Seconds from `moment` to the first request sent after it that succeeded."""
        for outcome in self.outcomes:
            if what is not None and outcome.what != what:
                continue
            if outcome.at - outcome.elapsed >= moment and 200 <= outcome.status < 300:
                return outcome.at - moment
        return None


@contextlib.asynccontextmanager
async def steady(
    load: Load, workers: Sequence[Callable[[], Awaitable[None]]], pause: float = 0.02
) -> AsyncIterator[Load]:
    """Run every worker step in a loop (a short pause between steps) until the block ends."""
    stop = asyncio.Event()

    async def loop(step: Callable[[], Awaitable[None]]) -> None:
        while not stop.is_set():
            await step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)

    tasks = [asyncio.create_task(loop(step)) for step in workers]
    try:
        yield load
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)


async def poll(check: Callable[[], Awaitable[bool]], what: str, within: float) -> float:
    """Seconds until `check()` held; fail naming `what` after `within` seconds."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@contextlib.contextmanager
def timer() -> Iterator[Callable[[], float]]:
    started = time.monotonic()
    yield lambda: time.monotonic() - started
