"""The one way every service builds, starts and stops its gRPC server.

`create_server` returns `(server, port)` ready to start, with the health servicer, reflection
and the interceptor registered beside the service's own servicers. `run_service` is what each
`python -m services.<name>` calls: config, logging, resources, serve, graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2_grpc

from services.runtime.admin import start_admin
from services.runtime.allocator import limit_malloc_arenas
from services.runtime.auth import SessionChecker
from services.runtime.channels import SERVER_KEEPALIVE_OPTIONS
from services.runtime.collector import freeze_startup_objects
from services.runtime.config import ConfigError, RuntimeConfig, load_runtime_config
from services.runtime.descriptors import method_rules
from services.runtime.health import DependencyCheck, Health, watching
from services.runtime.interceptors import ServerInterceptor
from services.runtime.logs import configure_logging
from services.runtime.reflection import add_reflection
from services.runtime.tokens import token_verifier

log = logging.getLogger(__name__)


@dataclass
class ServiceParts:
    """What a service contributes: its servicers and what its health depends on."""

    services: Sequence[ServiceDescriptor]
    register: Callable[[grpc.aio.Server], None]
    sessions: SessionChecker
    checks: Mapping[str, DependencyCheck] = field(default_factory=dict)
    # Run at shutdown after NOT_SERVING and before the drain: end what never ends by itself
    # (open server streams), so the drain waits only for calls that finish.
    draining: Sequence[Callable[[], Awaitable[None]]] = ()
    # Run once the server listens, with its port (port 0 in tests is known only then): what
    # must tell others where this replica is (the owner of terminal sessions).
    serving: Sequence[Callable[[int], Awaitable[None]]] = ()


def create_server(
    config: RuntimeConfig, parts: ServiceParts, *, port: int | None = None
) -> tuple[grpc.aio.Server, int, Health]:
    """Build the server and bind it; `port=0` (tests) picks a free port."""
    interceptor = ServerInterceptor(
        config.service,
        method_rules(parts.services),
        token_verifier(config),
        parts.sessions,
        config.trusted_proxies,
    )
    server = grpc.aio.server(
        interceptors=[interceptor],
        options=[
            ("grpc.max_receive_message_length", 32 * 1024 * 1024),
            ("grpc.max_send_message_length", 32 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
            *SERVER_KEEPALIVE_OPTIONS,
        ],
    )
    names = [s.full_name for s in parts.services]
    health = Health(names, parts.checks)
    parts.register(server)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    add_reflection(server, [*names, "grpc.health.v1.Health"])
    address = f"{config.host}:{config.port if port is None else port}"
    try:
        # grpcio raises RuntimeError here (older versions returned 0): name what failed.
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(f"cannot bind {config.service} to {address} (is the port in use?)")
    return server, bound, health


async def start_server(
    config: RuntimeConfig, parts: ServiceParts, *, port: int | None = None
) -> tuple[grpc.aio.Server, int, Health]:
    server, bound, health = create_server(config, parts, port=port)
    await server.start()
    for started in parts.serving:
        await started(bound)
    await health.set_serving(await health.check_dependencies())
    return server, bound, health


async def stop_server(
    server: grpc.aio.Server,
    health: Health,
    grace: float,
    draining: Sequence[Callable[[], Awaitable[None]]] = (),
) -> None:
    """NOT_SERVING first (balancers stop sending), end open streams, then drain calls."""
    await health.shut_down()
    for end in draining:
        try:
            await end()
        except Exception:  # one hook failing must not keep the server from stopping
            log.exception("a drain hook failed")
    await server.stop(grace)


Builder = Callable[[RuntimeConfig, contextlib.AsyncExitStack], Awaitable[ServiceParts]]


@dataclass
class Running:
    port: int
    health: Health
    server: grpc.aio.Server


@contextlib.asynccontextmanager
async def running(
    config: RuntimeConfig, build: Builder, *, port: int | None = None, grace: float | None = None
) -> AsyncIterator[Running]:
    """Build a service's resources, start its server, and stop both on exit (tests: port=0)."""
    async with contextlib.AsyncExitStack() as resources:
        parts = await build(config, resources)
        server, bound, health = await start_server(config, parts, port=port)
        try:
            yield Running(bound, health, server)
        finally:
            log.info("shutting down", extra={"graceSeconds": config.shutdown_grace})
            await stop_server(
                server,
                health,
                config.shutdown_grace if grace is None else grace,
                parts.draining,
            )


async def serve(config: RuntimeConfig, build: Builder) -> None:
    async with running(config, build) as service:
        freeze_startup_objects()
        admin = await start_admin(
            config.service, service.health, config.admin_host, config.admin_port
        )
        log.info("serving", extra={"port": service.port, "adminPort": config.admin_port})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with watching(service.health):
                await stop.wait()
        finally:
            await admin.cleanup()
    log.info("stopped")


def run_service(service: str, build: Builder) -> None:
    """Entry point of `python -m services.<service>`."""
    limit_malloc_arenas()  # before any thread starts (see services/runtime/allocator.py)
    try:
        config = load_runtime_config(service)
    except ConfigError as error:
        sys.exit(f"{service}: configuration error: {error}")
    configure_logging(service, config.log_level)
    try:
        import uvloop  # measured 10-30% faster on gRPC paths here (FIELD-NOTES.md)
    except ImportError:  # pragma: no cover - uvloop is a dependency; tolerate its absence
        asyncio.run(serve(config, build))
    else:
        uvloop.run(serve(config, build))
