"""The started system, as `make run` starts it: migrations, then honcho with deploy/Procfile.

One system per test session, on free ports below 32768 and a temporary var/ folder. Teardown
stops it as Ctrl-C does (SIGINT to honcho's process group) and checks that every process left
within the grace period.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from services.runtime.config import DOMAIN_SERVICES
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROCESSES = (*DOMAIN_SERVICES, "facade")
STARTUP_TIMEOUT = 60.0
# honcho SIGKILLs whatever still runs 5 s after it forwarded SIGTERM, so it exits well within this.
STOP_TIMEOUT = 20.0
BCRYPT_TEST_COST = "4"
ADMIN_EMAIL = "admin@e2e.stockfolio.test"

# One route per domain service, answered by the service itself (401 without a token).
ROUTE_OF = {
    "users": "/api/v1/users/me",
    "assistant": "/api/v1/chat/sessions",
    "terminal": "/api/v1/terminal/terminals",
    "workspace": "/api/v1/workspace/projects",
    "portfolio": "/api/v1/portfolios",
}
UNREACHED = {502, 503, 504}

# Variables of ours that a developer's shell may hold and that would point the system elsewhere.
_OURS = re.compile(
    r"^(STOCKFOLIO_|JWT_|DATABASE_URL$|REDIS_URL$|"
    r"(USERS|ASSISTANT|TERMINAL|WORKSPACE|PORTFOLIO|FACADE)_)"
)
# honcho's own lines: "12:00:00 system | users.1 started (pid=123)" (".1": first of its kind).
_STARTED = re.compile(r"\| (\w+)(?:\.\d+)? started \(pid=(\d+)\)")
_STOPPED = re.compile(r"\| (\w+)(?:\.\d+)? stopped \(rc=(-?\d+)\)")


@dataclass
class Output:
    """Everything honcho printed so far, collected by a thread so the pipe never fills."""

    lines: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def collect(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            with self.lock:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
        stream.close()

    def text(self) -> str:
        with self.lock:
            return "\n".join(self.lines)


@dataclass(frozen=True)
class System:
    """Where the started system answers."""

    facade_url: str
    grpc_ports: Mapping[str, int]
    admin_ports: Mapping[str, int]
    output: Output
    var_dir: Path | None = None


@dataclass(frozen=True)
class Response:
    status: int
    body: Any
    headers: Mapping[str, str]


def request(
    method: str,
    url: str,
    *,
    body: Any = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> Response:
    """One plain-HTTP request; the answer is parsed as JSON when it is JSON, else kept as text."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not a plain-HTTP URL: {url}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    data = None if body is None else json.dumps(body).encode()
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, target, data, headers)
        answer = connection.getresponse()
        raw = answer.read()
    finally:
        connection.close()
    text = raw.decode("utf-8", "replace")
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = text
    return Response(answer.status, parsed, dict(answer.headers))


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def system_environment(
    var_dir: Path, grpc_ports: Mapping[str, int], admin_ports: Mapping[str, int], facade_port: int
) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not _OURS.match(k)}
    environ.update(
        {
            # What `make run` gives the processes: the venv's python first, the repo importable.
            "PATH": f"{BIN}{os.pathsep}{environ.get('PATH', '')}",
            "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'gen'}",
            "PYTHONUNBUFFERED": "1",
            "STOCKFOLIO_ENV": "development",
            "STOCKFOLIO_VAR_DIR": str(var_dir),
            "STOCKFOLIO_ADMIN_EMAIL": ADMIN_EMAIL,
            "BCRYPT_COST": BCRYPT_TEST_COST,
            "FACADE_PORT": str(facade_port),
            # Small sandbox limits, so the escape suite can run into them quickly.
            "SANDBOX_MAX_PROCESSES": "64",
            "SANDBOX_MEMORY_BYTES": str(256 * 1024 * 1024),
        }
    )
    for name in DOMAIN_SERVICES:
        prefix = name.upper()
        environ[f"{prefix}_PORT"] = str(grpc_ports[name])
        environ[f"{prefix}_ADMIN_PORT"] = str(admin_ports[name])
        environ[f"{prefix}_ADDRS"] = f"127.0.0.1:{grpc_ports[name]}"
    return environ


def run_migrations(environ: Mapping[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.runtime.migrate"],
        cwd=REPO,
        env=dict(environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"migrations failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def child_pids(output: Output) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in _STARTED.finditer(output.text())}


def stopped_codes(output: Output) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in _STOPPED.finditer(output.text())}


def process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def readiness(system: System) -> str | None:
    """None when the system is ready, else what it is still waiting for.

    Ready: /health/all answers 200, and each service answers through the facade. The second
    half matters because /health/all probes over channels of its own: for a second or two after
    a simultaneous start, the facade's call channels can still be in reconnect backoff and
    answer 503 while the probes already see SERVING.
    """
    health = request("GET", f"{system.facade_url}/health/all", timeout=2.0)
    if health.status != 200:
        return f"/health/all: HTTP {health.status}: {health.body}"
    for service, path in ROUTE_OF.items():
        answer = request("GET", f"{system.facade_url}{path}", timeout=2.0)
        if answer.status in UNREACHED:
            return f"{service} through {path}: HTTP {answer.status}: {answer.body}"
    return None


def wait_until_ready(honcho: subprocess.Popen[bytes], system: System) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    waiting_for: str | None = "no answer yet"
    while time.monotonic() < deadline:
        if honcho.poll() is not None:
            raise RuntimeError(f"honcho exited early with {honcho.returncode}")
        try:
            waiting_for = readiness(system)
        except OSError as error:
            waiting_for = f"{type(error).__name__}: {error}"
        if waiting_for is None:
            return
        time.sleep(0.25)
    raise TimeoutError(f"not ready within {STARTUP_TIMEOUT:.0f} s: {waiting_for}")


def stop(honcho: subprocess.Popen[bytes]) -> None:
    """Ctrl-C: SIGINT to honcho's process group (its children run in sessions of their own)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(honcho.pid, signal.SIGINT)
    try:
        honcho.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        honcho.kill()
        honcho.wait()


def kill_leftovers(pids: Mapping[str, int]) -> None:
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("e2e")
    var_dir = root / "var"
    # honcho reads .env from the app root; an empty file keeps a developer's .env out of the run.
    no_env_file = root / "empty.env"
    no_env_file.write_text("")
    ports = distinct_free_ports(2 * len(DOMAIN_SERVICES) + 1)
    grpc_ports = dict(zip(DOMAIN_SERVICES, ports[: len(DOMAIN_SERVICES)], strict=True))
    admin_ports = dict(zip(DOMAIN_SERVICES, ports[len(DOMAIN_SERVICES) : -1], strict=True))
    environ = system_environment(var_dir, grpc_ports, admin_ports, facade_port=ports[-1])
    run_migrations(environ)

    honcho = subprocess.Popen(
        [
            str(BIN / "honcho"),
            "--procfile",
            "deploy/Procfile",
            "--app-root",
            str(REPO),
            "--env",
            str(no_env_file),
            "start",
        ],
        cwd=REPO,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output = Output()
    assert honcho.stdout is not None
    reader = threading.Thread(target=output.collect, args=(honcho.stdout,), daemon=True)
    reader.start()
    started = System(
        facade_url=f"http://127.0.0.1:{ports[-1]}",
        grpc_ports=grpc_ports,
        admin_ports=admin_ports,
        output=output,
        var_dir=var_dir,
    )
    try:
        wait_until_ready(honcho, started)
    except BaseException as problem:
        stop(honcho)
        kill_leftovers(child_pids(output))
        reader.join(timeout=5)
        if not isinstance(problem, RuntimeError | TimeoutError):
            raise
        pytest.fail(
            f"the system did not start: {problem}\n--- honcho output ---\n{output.text()}",
            pytrace=False,
        )

    yield started

    stop(honcho)
    reader.join(timeout=5)
    pids = child_pids(output)
    groups = {**pids, "honcho": honcho.pid}
    leftovers = {name: pid for name, pid in groups.items() if process_group_alive(pid)}
    kill_leftovers(leftovers)
    log = output.text()
    assert sorted(pids) == sorted(PROCESSES), f"honcho did not start every process:\n{log}"
    assert not leftovers, f"still running after Ctrl-C: {leftovers}\n{log}"
    assert "sending SIGKILL" not in log, f"a process outlived the grace period:\n{log}"
    codes = stopped_codes(output)
    unclean = {name: codes.get(name) for name in PROCESSES if codes.get(name) != 0}
    assert not unclean, f"processes that did not exit cleanly (name: rc): {unclean}\n{log}"


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    name: str
    user_id: str
    access_token: str
    refresh_token: str


def new_credentials() -> tuple[str, str, str]:
    tag = uuid.uuid4().hex[:12]
    return f"e2e-{tag}@example.test", f"Pw-{tag}-long-enough", f"E2E {tag}"


def register(system: System) -> tuple[Response, Account]:
    """Registers a fresh account through the facade."""
    email, password, name = new_credentials()
    answer = request(
        "POST",
        f"{system.facade_url}/api/v1/auth/register",
        body={"email": email, "password": password, "name": name},
    )
    assert answer.status == 201, answer.body
    data = answer.body["data"]
    account = Account(
        email=email,
        password=password,
        name=name,
        user_id=data["user"]["id"],
        access_token=data["tokens"]["accessToken"],
        refresh_token=data["tokens"]["refreshToken"],
    )
    return answer, account


@pytest.fixture
def account(system: System) -> Account:
    return register(system)[1]
