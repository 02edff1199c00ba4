"""Fixtures for runtime integration tests: real grpc.aio servers on port 0 built from ServiceParts,
tokens signed with the test keys, a session store the test controls, and real service processes
(`python -m services.<name>`) on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facade.app import create_app
from facade.config import load_facade_config
from services.runtime.auth import TokenCodec
from services.runtime.auth import bearer as authorization
from services.runtime.config import DOMAIN_SERVICES, RuntimeConfig
from services.runtime.context import Identity
from services.runtime.health import DependencyCheck
from services.runtime.logs import JsonFormatter
from services.runtime.server import Running, ServiceParts, running
from tests.bcrypt_calls import BcryptCalls, count_bcrypt_calls
from tests.conftest import free_port, token_environment, users_codec

ROOT = Path(__file__).resolve().parents[2]


class SessionBook:
    """A test double for the users service's session store, which the auth interceptor asks
    whether a session is still live. Tests revoke sessions by id and see which were asked."""

    def __init__(self) -> None:
        self.revoked: set[str] = set()
        self.asked: list[str] = []

    async def is_live(self, identity: Identity) -> bool:
        self.asked.append(identity.session_id)
        return identity.session_id not in self.revoked


@pytest.fixture
def bcrypt_calls(monkeypatch: pytest.MonkeyPatch) -> BcryptCalls:
    """bcrypt's calls in this process (a users server the test runs), counted."""
    return count_bcrypt_calls(monkeypatch)


@pytest.fixture
def sessions() -> SessionBook:
    return SessionBook()


@pytest.fixture
def codec() -> TokenCodec:
    """Signs tokens as the users service would, with the key `make_config` configures."""
    return users_codec()


class Issue(Protocol):
    def __call__(
        self, *, session_id: str = ..., roles: Sequence[str] = ..., user_id: str = ...
    ) -> tuple[tuple[str, str], ...]: ...


@pytest.fixture
def bearer(codec: TokenCodec) -> Issue:
    """Metadata carrying a fresh access token for a user and session."""

    def issue(
        *, session_id: str = "s-1", roles: Sequence[str] = ("user",), user_id: str = "u-1"
    ) -> tuple[tuple[str, str], ...]:
        token, _ = codec.issue_access(
            user_id=user_id, session_id=session_id, email=f"{user_id}@example.com", roles=[*roles]
        )
        return (authorization(token),)

    return issue


Register = Callable[[Any, grpc.aio.Server], None]
Serve = Callable[..., contextlib.AbstractAsyncContextManager[Running]]


@pytest.fixture
def serve(make_config: Callable[..., RuntimeConfig], sessions: SessionBook) -> Serve:
    """Start a real server on port 0 for the given servicer, behind the runtime's interceptor.

    `serve(servicer, add_to_server, descriptor)` yields the running service; `checks` adds
    dependency checks, `grace` sets the drain time on exit.
    """

    @contextlib.asynccontextmanager
    async def start(
        servicer: Any,
        add_to_server: Register,
        descriptor: ServiceDescriptor,
        *,
        checks: Mapping[str, DependencyCheck] | None = None,
        grace: float = 0,
    ) -> AsyncIterator[Running]:
        async def build(
            config: RuntimeConfig, resources: contextlib.AsyncExitStack
        ) -> ServiceParts:
            return ServiceParts(
                services=[descriptor],
                register=lambda server: add_to_server(servicer, server),
                sessions=sessions,
                checks=dict(checks or {}),
            )

        config = make_config(descriptor.file.package.split(".")[1])
        async with running(config, build, port=0, grace=grace) as service:
            yield service

    return start


@pytest.fixture
def rpc_log() -> Iterator[io.StringIO]:
    """The JSON lines the interceptor writes for each RPC, formatted as a service writes them."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter("portfolio"))
    logger = logging.getLogger("stockfolio.rpc")
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


class ServiceProcess:
    """One `python -m services.<name>` process on free ports. Its stdout (JSON log lines) and
    stderr go to files, so a chatty process never blocks on a full pipe."""

    def __init__(
        self,
        name: str,
        process: asyncio.subprocess.Process,
        port: int,
        admin_port: int,
        logs: tuple[Path, Path],
    ) -> None:
        self.name = name
        self.process = process
        self.port = port
        self.admin_port = admin_port
        self.stdout, self.stderr = logs

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_lines(self) -> list[dict[str, Any]]:
        text = self.stdout.read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    async def wait_until_serving(self, within: float = 60) -> None:
        """Poll gRPC health until SERVING; fail with the process's stderr if it exits first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while loop.time() < deadline:
                if self.process.returncode is not None:
                    raise AssertionError(f"{self.name} exited: {self.stderr.read_text()}")
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                except grpc.aio.AioRpcError:
                    reply = None
                if reply is not None and reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} never answered SERVING: {self.stderr.read_text()}")

    async def handled(self, method: str, code: str = "OK") -> float:
        """The process's own count of RPCs, read from /metrics on its admin port."""
        url = f"http://127.0.0.1:{self.admin_port}/metrics"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            text = await response.text()
        labels = (f'method="{method}"', f'code="{code}"')
        for line in text.splitlines():
            if line.startswith("stockfolio_grpc_server_handled_total{") and all(
                label in line for label in labels
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    async def stop(self, sig: int, within: float) -> int:
        """Signal the process and wait for its exit code."""
        self.process.send_signal(sig)
        return await asyncio.wait_for(self.process.wait(), timeout=within)


Spawn = Callable[..., contextlib.AbstractAsyncContextManager[ServiceProcess]]


def service_environment(var_dir: Path, service: str = "", **extra: str) -> dict[str, str]:
    """The environment a test service process runs in: test mode, the test keys `service` may
    hold (public halves only when unnamed), no users."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}",
        "STOCKFOLIO_ENV": "test",
        "STOCKFOLIO_VAR_DIR": str(var_dir),
        **token_environment(service),
        "USERS_ADDRS": "127.0.0.1:1",
        "LOG_LEVEL": "INFO",
        **extra,
    }


@pytest.fixture
def spawn(tmp_path: Path) -> Spawn:
    """Start `python -m services.<name>` on free ports; killed on exit if still running.

    Keyword arguments are environment variables on top of `service_environment`.
    """

    async def launch(name: str, environ: Mapping[str, str]) -> ServiceProcess:
        port, admin_port = free_port(), free_port()
        prefix = name.upper()
        env = service_environment(
            tmp_path / "var",
            name,
            **{f"{prefix}_PORT": str(port), f"{prefix}_ADMIN_PORT": str(admin_port)},
            **environ,
        )
        logs = (tmp_path / f"{name}-{port}.out", tmp_path / f"{name}-{port}.err")
        with logs[0].open("wb") as out, logs[1].open("wb") as err:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", f"services.{name}", cwd=ROOT, env=env, stdout=out, stderr=err
            )
        return ServiceProcess(name, process, port, admin_port, logs)

    @contextlib.asynccontextmanager
    async def start(name: str, **environ: str) -> AsyncIterator[ServiceProcess]:
        # A port found free can be taken by another worker's process before this one binds
        # it: started again on other ports, as often as that happens (three times at most).
        for attempt in range(3):
            service = await launch(name, environ)
            try:
                await service.wait_until_serving()
                break
            except AssertionError:
                taken = "address already in use" in service.stderr.read_text().lower()
                if service.process.returncode is None or not taken or attempt == 2:
                    await _killed(service.process)
                    raise
            except BaseException:  # cancelled while it started (another one failed beside it)
                await _killed(service.process)
                raise
        try:
            yield service
        finally:
            await _killed(service.process)

    return start


async def _killed(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()


Client = TestClient[web.Request, web.Application]
FacadeInFront = Callable[..., contextlib.AbstractAsyncContextManager[Client]]
# Nothing listens there: a service a test does not start answers UNAVAILABLE at once.
DEAD = "127.0.0.1:1"


@pytest.fixture
def facade_in_front(make_config: Callable[..., RuntimeConfig]) -> FacadeInFront:
    """A real facade (in a TestClient) in front of the services at `addresses` (by name),
    every other one dead, rate limits off; keyword arguments are its environment, and
    `production=True` runs it as STOCKFOLIO_ENV=production would."""

    @contextlib.asynccontextmanager
    async def start(
        addresses: Mapping[str, str], *, production: bool = False, **environ: str
    ) -> AsyncIterator[Client]:
        env = {f"{name.upper()}_ADDRS": addresses.get(name, DEAD) for name in DOMAIN_SERVICES}
        env.update({"RATE_LIMIT_API": "0", "RATE_LIMIT_AUTH": "0", **environ})
        runtime = make_config("facade", **env)
        if production:
            # Only the mode: production's key and database checks are config tests' business.
            runtime = dataclasses.replace(runtime, environment="production")
        config = load_facade_config(env, runtime=runtime)
        async with TestClient(TestServer(create_app(config))) as client:
            yield client

    return start
