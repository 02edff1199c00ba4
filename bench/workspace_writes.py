"""`make bench --only workspace` (or `--only workspace-writes`): small-file writes and what
they cost the workspace database, on SQLite and on PostgreSQL.

Each write is a CreateFile of 1 KiB (a new path each time, in one user's project) through the
real workspace gRPC server: the users service runs as its own process, the workspace server in
this one (so that a SQLAlchemy event listener can count what its engine does), its client too.
First `sequential` writes one after the other (p50/p99 of each call's wall time), then
`concurrent` writes by `concurrency` callers at once for the same user (whose quota row they
all lock: writes/s and p50/p99). Then the quota's own part alone, in this process without
the call around it (a reservation of a new 1 KiB file, the change counted, the room given
back, one after the other on another user's folder): what the review's cost is about.
Transactions (commits and rollbacks) and statements (what the driver is asked to execute; on
SQLite that includes our `BEGIN IMMEDIATE`) are counted on the workspace database's engines
only, over the measured writes, and given per write; CPU time is this whole process's (the
server, its database driver's threads and the client). Figures, never verdicts: the machine
is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import event
from sqlalchemy.engine import Engine
from stockfolio.users.v1 import users_pb2, users_pb2_grpc
from stockfolio.workspace.v1 import workspace_pb2, workspace_pb2_grpc

from bench.measures import percentile
from bench.report import RESULTS, PartReport, Row, print_rows
from bench.system import Fleet, postgres_databases, system_environment, wait_for_http
from services.runtime.auth import bearer
from services.runtime.config import load_runtime_config
from services.runtime.db import Database
from services.runtime.server import running
from services.workspace.quota import Quotas, Usage
from services.workspace.server import build as build_workspace
from tests.system_harness import Ports, migrate

WRITES_RESULTS = RESULTS.parent / "workspace-writes.json"
DATABASES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


@dataclass(frozen=True)
class WritesSettings:
    size: int = 1024
    warmup: int = 50
    sequential: int = 500
    concurrent: int = 800
    concurrency: int = 8
    databases: tuple[str, ...] = ("sqlite", "postgresql")


@dataclass
class WritesReport(PartReport[WritesSettings]):
    """What the small-writes part found."""


class Counter:
    """Transactions and statements of the engines whose database is `database` (a SQLite file
    or a PostgreSQL database name), counted by SQLAlchemy's events on every engine."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.transactions = 0
        self.statements = 0

    def _ours(self, connection: Any) -> bool:
        return str(connection.engine.url.database) == self.database

    def _statement(self, connection: Any, *_: Any) -> None:
        if self._ours(connection):
            self.statements += 1

    def _ended(self, connection: Any) -> None:
        if self._ours(connection):
            self.transactions += 1

    @contextlib.contextmanager
    def listening(self) -> Iterator[Counter]:
        hooks = (
            ("before_cursor_execute", self._statement),
            ("commit", self._ended),
            ("rollback", self._ended),
        )
        for name, hook in hooks:
            event.listen(Engine, name, hook)
        try:
            yield self
        finally:
            for name, hook in hooks:
                event.remove(Engine, name, hook)

    def read(self) -> tuple[int, int]:
        return self.transactions, self.statements


async def _writes(
    stub: workspace_pb2_grpc.WorkspaceServiceStub,
    metadata: tuple[tuple[str, str], ...],
    project: str,
    content: str,
    count: int,
    concurrency: int,
) -> list[float]:
    """`count` CreateFile calls, `concurrency` at a time; ms each."""
    timings: list[float] = []
    names = iter(range(count))

    async def caller() -> None:
        for _ in names:
            path = f"w/{uuid.uuid4().hex}.txt"
            started = time.perf_counter()
            await stub.CreateFile(
                workspace_pb2.CreateFileRequest(project=project, path=path, content=content),
                metadata=metadata,
            )
            timings.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return timings


@contextlib.asynccontextmanager
async def _workspace(environ: dict[str, str]) -> AsyncIterator[str]:
    config = load_runtime_config("workspace", environ)
    async with running(config, build_workspace, port=0, grace=0) as service:
        yield f"127.0.0.1:{service.port}"


async def _quota_alone(
    url: str, folder: Path, counter: Counter, settings: WritesSettings
) -> dict[str, Any]:
    """The quota's own part of each write, without the rest of the call: reserve the room of
    a new file of `size` bytes, count it and give the room back, `sequential` times."""
    db = Database(url)
    try:
        quotas = Quotas(db, Usage(1 << 40, 1 << 30), interval=3600)
        timings: list[float] = []
        transactions, statements = counter.read()
        cpu = time.process_time()
        for _ in range(settings.sequential):
            started = time.perf_counter()
            room = await quotas.reserve(folder, size=settings.size, files=1)
            await quotas.changed(folder, size=settings.size, files=1, releasing=room)
            await room.release()
            timings.append((time.perf_counter() - started) * 1000)
        cpu = time.process_time() - cpu
    finally:
        await db.close()
    count = settings.sequential
    return {
        "writes": count,
        "concurrency": 1,
        "writes_per_s": round(count / (sum(timings) / 1000), 1),
        "p50_ms": round(percentile(timings, 0.5), 2),
        "p99_ms": round(percentile(timings, 0.99), 2),
        "transactions_per_write": round((counter.transactions - transactions) / count, 2),
        "statements_per_write": round((counter.statements - statements) / count, 2),
        "cpu_ms_per_write": round(cpu * 1000 / count, 2),
    }


async def _measure(
    environ: dict[str, str], users_address: str, counter: Counter, settings: WritesSettings
) -> dict[str, Any]:
    content = "x" * settings.size
    async with (
        _workspace(environ) as address,
        grpc.aio.insecure_channel(address) as channel,
        grpc.aio.insecure_channel(users_address) as users_channel,
    ):
        users = users_pb2_grpc.UsersServiceStub(users_channel)
        tag = uuid.uuid4().hex[:12]
        reply = await users.Register(
            users_pb2.RegisterRequest(
                email=f"bench-{tag}@example.test", password=f"Bench-{tag}-long", name="Bench"
            )
        )
        metadata = (bearer(reply.tokens.access_token),)
        stub = workspace_pb2_grpc.WorkspaceServiceStub(channel)
        made = await stub.CreateProject(
            workspace_pb2.CreateProjectRequest(name="bench", template="empty"), metadata=metadata
        )
        project = made.project.id
        await _writes(stub, metadata, project, content, settings.warmup, 1)
        found: dict[str, Any] = {}
        for kind, count, concurrency in (
            ("sequential", settings.sequential, 1),
            ("concurrent", settings.concurrent, settings.concurrency),
        ):
            transactions, statements = counter.read()
            started, cpu = time.perf_counter(), time.process_time()
            timings = await _writes(stub, metadata, project, content, count, concurrency)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            transactions, statements = (
                counter.transactions - transactions,
                counter.statements - statements,
            )
            found[kind] = {
                "writes": count,
                "concurrency": concurrency,
                "writes_per_s": round(count / seconds, 1),
                "p50_ms": round(percentile(timings, 0.5), 2),
                "p99_ms": round(percentile(timings, 0.99), 2),
                "transactions_per_write": round(transactions / count, 2),
                "statements_per_write": round(statements / count, 2),
                "cpu_ms_per_write": round(cpu * 1000 / count, 2),
            }
        return found


@contextlib.contextmanager
def _database(name: str) -> Iterator[dict[str, str]]:
    """Extra environment for the workspace database `name` names (SQLite: the default under
    var/)."""
    if name == "sqlite":
        yield {}
        return
    with postgres_databases(("workspace",)) as urls:
        yield {"WORKSPACE_DATABASE_URL": urls["workspace"]}


def run_writes(settings: WritesSettings) -> WritesReport:
    report = WritesReport(settings)
    for name in settings.databases:
        with (
            tempfile.TemporaryDirectory(prefix="stockfolio-bench-writes-") as temporary,
            _database(name) as extra,
        ):
            root = Path(temporary)
            ports = Ports.pick()
            environ = {**system_environment(root / "var", ports, 4), **extra}
            (root / "logs").mkdir()
            print(f"small writes on {DATABASES[name]}: starting users ...", flush=True)
            migrate(environ, ("users", "workspace"))
            config = load_runtime_config("workspace", environ)
            database = str(config.database_url).rsplit("/", 1)[1]
            if name == "sqlite":
                database = str(Path(config.database_url.split(":///", 1)[1]))
            with Fleet(root / "logs", environ) as fleet, Counter(database).listening() as counter:
                users = fleet.start("users", ["-m", "services.users"])
                wait_for_http(users, ports.admin["users"], "/health")
                found = asyncio.run(
                    _measure(environ, f"127.0.0.1:{ports.grpc['users']}", counter, settings)
                )
                users.check_alive()
                (root / "quota-user").mkdir()
                found["quota alone"] = asyncio.run(
                    _quota_alone(config.database_url, root / "quota-user", counter, settings)
                )
            report.facts[name] = found
    build_writes_rows(report)
    WRITES_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    WRITES_RESULTS.write_text(json.dumps(report.document(), indent=2) + "\n")
    return report


def build_writes_rows(report: WritesReport) -> None:
    size = report.settings.size
    for name, found in report.facts.items():
        for kind, figures in found.items():
            report.rows.append(
                Row(
                    f"its quota alone (reserve, count, release), {DATABASES[name]}"
                    if kind == "quota alone"
                    else f"CreateFile {size} B, {kind} (c{figures['concurrency']}),"
                    f" {DATABASES[name]}",
                    rps=figures["writes_per_s"],
                    p50_ms=figures["p50_ms"],
                    p99_ms=figures["p99_ms"],
                    note=(
                        f"{figures['transactions_per_write']} transactions,"
                        f" {figures['statements_per_write']} statements,"
                        f" {figures['cpu_ms_per_write']} ms CPU (this process) a write"
                        f" ({figures['writes']} writes)"
                    ),
                )
            )


def describe_writes(settings: WritesSettings) -> str:
    return (
        f"workspace writes: CreateFile of {settings.size} B through the gRPC server,"
        f" {settings.sequential} one at a time and {settings.concurrent}"
        f" at c{settings.concurrency},"
        f" on {', '.join(DATABASES[d] for d in settings.databases)}"
    )


def print_writes(report: WritesReport) -> None:
    print("\nworkspace small writes")
    print_rows(report.rows)
    print(f"workspace writes results: {WRITES_RESULTS}")


if __name__ == "__main__":
    found = WritesSettings()
    print(describe_writes(found), flush=True)
    print_writes(run_writes(found))
