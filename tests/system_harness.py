"""The started system, shared by the e2e tests, `make fuzz` and the benchmarks.

What they share: free ports below 32768, the environment `make run` gives every process, the
migrations, one plain-HTTP request, and starting the whole system as `make run` does
(migrations, then honcho with deploy/Procfile: the five services, the facade and the web process
serving web/dist, its origin the facade's FRONTEND_URL) and stopping it as Ctrl-C does.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.runtime.config import DOMAIN_SERVICES

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
PROCESSES = (*DOMAIN_SERVICES, "facade", "web")
STARTUP_TIMEOUT = 60.0
# honcho SIGKILLs whatever still runs 5 s after it forwarded SIGTERM, so it exits well within this.
STOP_TIMEOUT = 20.0

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
    r"^(STOCKFOLIO_|JWT_|DATABASE_URL$|REDIS_URL$|RATE_LIMIT_|BCRYPT_|LOG_LEVEL$|"
    r"ALPHA_VANTAGE_|USE_MOCK_PRICES$|MOCK_|WS_|FRONTEND_URL$|"
    r"(USERS|ASSISTANT|TERMINAL|WORKSPACE|PORTFOLIO|FACADE|WEB)_)"
)
# honcho's own lines: "12:00:00 system | users.1 started (pid=123)" (".1": first of its kind).
_STARTED = re.compile(r"\| (\w+)(?:\.\d+)? started \(pid=(\d+)\)")
_STOPPED = re.compile(r"\| (\w+)(?:\.\d+)? stopped \(rc=(-?\d+)\)")


class HarnessError(RuntimeError):
    """The system could not be started or reached (a process, a port, the migrations)."""


def free_ports(count: int) -> list[int]:
    """Distinct free ports below the ephemeral range (FIELD-NOTES.md: keep servers < 32768)."""
    found: list[int] = []
    for _ in range(200 * count):
        if len(found) == count:
            return found
        port = 20000 + int.from_bytes(os.urandom(2), "big") % 12000
        if port in found:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
        found.append(port)
    if len(found) == count:
        return found
    raise HarnessError("not enough free ports below 32768")


@dataclass(frozen=True)
class Ports:
    """Where each process listens; without `facade_admin` the facade takes its default."""

    grpc: Mapping[str, int]
    admin: Mapping[str, int]
    facade: int
    facade_admin: int | None = None
    # The web process (the built app); its origin is the one FRONTEND_URL allows.
    web: int | None = None

    @classmethod
    def pick(cls, *, facade_admin: bool = True) -> Ports:
        names = DOMAIN_SERVICES
        ports = free_ports(2 * len(names) + 2 + facade_admin)
        return cls(
            grpc=dict(zip(names, ports[: len(names)], strict=True)),
            admin=dict(zip(names, ports[len(names) : 2 * len(names)], strict=True)),
            facade=ports[2 * len(names)],
            web=ports[2 * len(names) + 1],
            facade_admin=ports[-1] if facade_admin else None,
        )

    @property
    def facade_url(self) -> str:
        return f"http://{HOST}:{self.facade}"

    @property
    def web_url(self) -> str | None:
        return None if self.web is None else f"http://{HOST}:{self.web}"


def system_environment(
    var_dir: Path, ports: Ports, settings: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment `make run` gives every process, on `ports`, with `settings` on top."""
    environ = {k: v for k, v in os.environ.items() if not _OURS.match(k)}
    environ.update(
        {
            # What `make run` gives the processes: the venv's python first, the repo importable.
            "PATH": f"{BIN}{os.pathsep}{environ.get('PATH', '')}",
            "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'gen'}",
            "PYTHONUNBUFFERED": "1",
            "STOCKFOLIO_ENV": "development",
            "STOCKFOLIO_VAR_DIR": str(var_dir),
            "FACADE_PORT": str(ports.facade),
        }
    )
    if ports.web_url is not None:
        # The app names the facade as its API; the facade lets exactly the app's origin in.
        environ["WEB_PORT"] = str(ports.web)
        environ["WEB_API_URL"] = ports.facade_url
        environ["FRONTEND_URL"] = ports.web_url
    environ.update(settings or {})
    if ports.facade_admin is not None:
        environ["FACADE_ADMIN_PORT"] = str(ports.facade_admin)
    for name in DOMAIN_SERVICES:
        prefix = name.upper()
        environ[f"{prefix}_PORT"] = str(ports.grpc[name])
        environ[f"{prefix}_ADMIN_PORT"] = str(ports.admin[name])
        environ[f"{prefix}_ADDRS"] = f"{HOST}:{ports.grpc[name]}"
    return environ


def migrate(environ: Mapping[str, str], services: Sequence[str] = ()) -> None:
    """`python -m services.runtime.migrate`: every service with migrations (as `make run`), or
    the ones named."""
    done = subprocess.run(
        [sys.executable, "-m", "services.runtime.migrate", *services],
        cwd=REPO,
        env=dict(environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise HarnessError(f"migrations failed ({done.returncode}):\n{done.stdout}{done.stderr}")


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


# -- the whole system under honcho ------------------------------------------------------------


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
    # The web process, serving the built app (web/dist) at the origin FRONTEND_URL allows.
    web_url: str = ""


@dataclass
class Honcho:
    """honcho running deploy/Procfile in a process group of its own, its output collected."""

    popen: subprocess.Popen[bytes]
    output: Output
    reader: threading.Thread

    @classmethod
    def start(cls, root: Path, environ: Mapping[str, str]) -> Honcho:
        # honcho reads .env from the app root; an empty file keeps a developer's .env out.
        no_env_file = root / "empty.env"
        no_env_file.write_text("")
        popen = subprocess.Popen(
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
            env=dict(environ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        output = Output()
        assert popen.stdout is not None
        reader = threading.Thread(target=output.collect, args=(popen.stdout,), daemon=True)
        reader.start()
        return cls(popen, output, reader)

    def stop(self) -> None:
        """Ctrl-C: SIGINT to honcho's process group (its children run in sessions of their
        own), then the rest of its output."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGINT)
        try:
            self.popen.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self.reader.join(timeout=5)


def start_system(root: Path, settings: Mapping[str, str]) -> tuple[System, Honcho]:
    """Migrations, then honcho, on free ports with a var/ folder in `root`; returns once ready.

    A system that does not get ready is stopped (leftovers killed) before the error, which
    holds honcho's output, is raised. One whose port was taken between picking it and binding
    it (another worker's process) is started again on other ports, three times at most.
    """
    for attempt in range(3):
        try:
            return _start_system_once(root, settings)
        except HarnessError as problem:
            if attempt == 2 or "address already in use" not in str(problem).lower():
                raise
    raise AssertionError("not reached")


@contextlib.contextmanager
def running_system(
    root: Path, settings: Mapping[str, str], *, log: Path | None = None
) -> Iterator[System]:
    """`start_system`, stopped on the way out (leftovers killed); honcho's output is written to
    `log` when one is given."""
    system, honcho = start_system(root, settings)
    try:
        yield system
    finally:
        honcho.stop()
        kill_leftovers(child_pids(honcho.output))
        if log is not None:
            log.write_text(honcho.output.text() + "\n")


def _start_system_once(root: Path, settings: Mapping[str, str]) -> tuple[System, Honcho]:
    var_dir = root / "var"
    ports = Ports.pick(facade_admin=False)
    environ = system_environment(var_dir, ports, settings)
    migrate(environ)
    honcho = Honcho.start(root, environ)
    assert ports.web_url is not None
    system = System(
        facade_url=ports.facade_url,
        grpc_ports=ports.grpc,
        admin_ports=ports.admin,
        output=honcho.output,
        var_dir=var_dir,
        web_url=ports.web_url,
    )
    try:
        wait_until_ready(honcho, system)
    except BaseException as problem:
        honcho.stop()
        kill_leftovers(child_pids(honcho.output))
        if isinstance(problem, HarnessError):
            log = honcho.output.text()
            raise HarnessError(f"{problem}\n--- honcho output ---\n{log}") from None
        raise
    return system, honcho


def readiness(system: System) -> str | None:
    """None when the system is ready, else what it is still waiting for.

    Ready: /health/all answers 200, each service answers through the facade, and the web
    process answers /healthz. The second part matters because /health/all probes over channels
    of its own: for a second or two after a simultaneous start, the facade's call channels can
    still be in reconnect backoff and answer 503 while the probes already see SERVING.
    """
    health = request("GET", f"{system.facade_url}/health/all", timeout=2.0)
    if health.status != 200:
        return f"/health/all: HTTP {health.status}: {health.body}"
    for service, path in ROUTE_OF.items():
        answer = request("GET", f"{system.facade_url}{path}", timeout=2.0)
        if answer.status in UNREACHED:
            return f"{service} through {path}: HTTP {answer.status}: {answer.body}"
    if system.web_url:
        web = request("GET", f"{system.web_url}/healthz", timeout=2.0)
        if web.status != 200:
            return f"web /healthz: HTTP {web.status}: {web.body}"
    return None


def wait_until_ready(honcho: Honcho, system: System) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    waiting_for: str | None = "no answer yet"
    while time.monotonic() < deadline:
        if honcho.popen.poll() is not None:
            raise HarnessError(f"honcho exited early with {honcho.popen.returncode}")
        try:
            waiting_for = readiness(system)
        except OSError as error:
            waiting_for = f"{type(error).__name__}: {error}"
        if waiting_for is None:
            return
        time.sleep(0.25)
    raise HarnessError(f"not ready within {STARTUP_TIMEOUT:.0f} s: {waiting_for}")


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


def kill_leftovers(pids: Mapping[str, int]) -> None:
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


# -- a client of the started system ----------------------------------------------------------


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
