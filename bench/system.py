"""Starting and stopping the processes a benchmark measures, waiting for health, reading CPU.

Every process is started directly (`python -m ...`, no shell in between, in a session of its
own), so its pid is the pid whose memory is read and the one signalled. `Fleet` stops them all
when it exits, SIGTERM first and SIGKILL after a grace period, whatever went wrong.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg

from services.runtime.config import DOMAIN_SERVICES
from tests.system_harness import HOST, REPO, HarnessError, Ports, Response, request
from tests.system_harness import system_environment as shared_environment

STOP_GRACE = 15.0
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise HarnessError(
                f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}"
            )


@dataclass
class Fleet:
    """Owns started processes; stops every one of them on exit."""

    log_dir: Path
    environ: Mapping[str, str]
    processes: list[Process] = field(default_factory=list)

    def start(
        self, name: str, argv: Sequence[str], *, pipes: bool = False, **extra_env: str
    ) -> Process:
        """Start `python argv...`; with `pipes`, its stdin and stdout are pipes to talk to it
        (stderr still goes to the log)."""
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [sys.executable, *argv],
                cwd=REPO,
                env={**self.environ, **extra_env},
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes else log,
                stderr=log if pipes else subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process(name, popen, log_path)
        self.processes.append(process)
        return process

    def stop(self, processes: Sequence[Process] | None = None) -> None:
        chosen = list(self.processes if processes is None else processes)
        for process in chosen:
            if process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for process in chosen:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        for process in chosen:
            if process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.popen.kill()
                process.popen.wait()
            for pipe in (process.popen.stdin, process.popen.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        self.processes = [p for p in self.processes if p not in chosen]

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def http_request(
    port: int,
    method: str,
    path: str,
    *,
    body: Any = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> Response:
    """One request to 127.0.0.1; a JSON answer is parsed, anything else kept as text."""
    return request(method, f"http://{HOST}:{port}{path}", body=body, token=token, timeout=timeout)


def wait_for_http(process: Process, port: int, path: str, *, timeout: float = 60.0) -> Response:
    """Poll until `path` answers 200 (or the process dies, or time runs out)."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        process.check_alive()
        try:
            answer = http_request(port, "GET", path, timeout=2.0)
        except OSError as error:
            last = f"{type(error).__name__}: {error}"
        else:
            if answer.status == 200:
                return answer
            last = f"HTTP {answer.status}: {answer.body}"
        time.sleep(0.2)
    raise HarnessError(f"{process.name}: {path} did not answer 200 in {timeout:.0f} s ({last})")


def wait_for_port(process: Process, port: int, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check_alive()
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1.0):
            return
        time.sleep(0.1)
    raise HarnessError(f"{process.name}: port {port} did not open in {timeout:.0f} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (to see when it has gone idle)."""
    user, system = cpu_split(pid)
    return user + system


def postgres_cpu_seconds() -> float:
    """CPU time used so far by the local PostgreSQL server's processes (every backend and its
    background workers), for a bench that runs on the server's machine. A backend that exits
    takes its time with it: read it around load whose connections stay open (a pool's)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() == "postgres":
                total += cpu_seconds(int(entry.name))
    return total


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def wait_until_idle(pids: Sequence[int], *, timeout: float, below: float = 0.05) -> float:
    """Wait until the processes together use under `below` CPU-seconds per 0.5 s."""
    started = time.monotonic()
    before = sum(cpu_seconds(p) for p in pids)
    while time.monotonic() - started < timeout:
        time.sleep(0.5)
        after = sum(cpu_seconds(p) for p in pids)
        if after - before < below:
            break
        before = after
    return time.monotonic() - started


def system_environment(var_dir: Path, ports: Ports, bcrypt_cost: int) -> dict[str, str]:
    """The environment `make run` would give every process, with the benchmark's settings."""
    settings = {
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_API": "0",
        "RATE_LIMIT_AUTH": "0",
        # The users service's own budgets: benchmarks register their users from one address
        # and measure logins at full speed over a few accounts.
        "REGISTRATIONS_PER_IP": "0",
        "LOGINS_PER_ACCOUNT": "0",
        "LOGINS_PER_IP": "0",
        # Benchmarks open hundreds of sockets over a few users.
        "WS_SOCKETS_PER_USER": "0",
        "BCRYPT_COST": str(bcrypt_cost),
        "SHUTDOWN_GRACE": "5",
    }
    return shared_environment(var_dir, ports, settings)


def facade_available() -> bool:
    return (REPO / "facade" / "app.py").is_file() and (REPO / "facade" / "__main__.py").is_file()


@dataclass(frozen=True)
class System:
    ports: Ports
    processes: Mapping[str, Process]
    has_facade: bool


def start_system(fleet: Fleet, ports: Ports, *, with_facade: bool) -> System:
    """The five services, then the facade, each its own process; returns once all are healthy."""
    started = {name: fleet.start(name, ["-m", f"services.{name}"]) for name in DOMAIN_SERVICES}
    for name, process in started.items():
        wait_for_http(process, ports.admin[name], "/health")
    if with_facade:
        facade = fleet.start("facade", ["-m", "facade"])
        started["facade"] = facade
        wait_for_http(facade, ports.facade, "/health/all")
    return System(ports, started, with_facade)


@contextlib.contextmanager
def stopping_on_signals() -> Iterator[None]:
    """SIGTERM raises SystemExit (as Ctrl-C raises KeyboardInterrupt), so cleanup still runs."""

    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def postgres_databases(names: Sequence[str]) -> Iterator[dict[str, str]]:
    """Fresh, empty PostgreSQL databases (one per name) on the local server, dropped on exit
    whatever happened; yields their SQLAlchemy URLs by name."""
    tag = os.urandom(5).hex()
    created: dict[str, str] = {}
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].split("://", 1)[1]
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            for name in names:
                database = f"sf_bench_{tag}_{name}"
                admin.execute(f'CREATE DATABASE "{database}"')
                created[name] = database
    except psycopg.Error as error:
        _drop_databases(created.values())
        raise HarnessError(f"PostgreSQL at {POSTGRES_ADMIN_URL}: {error}") from None
    try:
        yield {name: f"postgresql+psycopg://{base}/{db}" for name, db in created.items()}
    finally:
        _drop_databases(created.values())


def _drop_databases(databases: Iterable[str]) -> None:
    names = list(databases)
    if not names:
        return
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            for database in names:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    except psycopg.Error as error:
        raise HarnessError(f"could not drop the databases {names}: {error}") from None


def postgres_activity(url: str) -> dict[str, int]:
    """The server's counters for the database `url` names: sessions opened so far, commits,
    rollbacks (pg_stat_database; the statistics collector lags by up to a second)."""
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute("SELECT pg_stat_clear_snapshot()")
        row = admin.execute(
            "SELECT sessions, xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s",
            (database,),
        ).fetchone()
    if row is None:
        raise HarnessError(f"no statistics for database {database}")
    return {"sessions": int(row[0]), "commits": int(row[1]), "rollbacks": int(row[2])}


def scheduling(pid: int) -> dict[str, float]:
    """How a process's main thread was scheduled so far: seconds on a CPU, seconds runnable but
    waiting for one (/proc/<pid>/schedstat), and its context switches (voluntary: it waited;
    involuntary: it was preempted); and the process's write system calls (/proc/<pid>/io)."""
    on_cpu, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    found = {"on_cpu": int(on_cpu) / 1e9, "run_queue": int(waiting) / 1e9}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
            name, value = line.split(":")
            found[name.removesuffix("_ctxt_switches")] = float(value)
    with contextlib.suppress(OSError):  # another user's process: no /proc/<pid>/io
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("syscw:"):
                found["write_calls"] = float(line.split(":")[1])
    return found
