"""The one factory for gRPC client channels (facade -> service, service -> service).

Everything is gRPC's own machinery, configured through its service config: round robin over
every replica, health-checked subchannels, retries for methods the protos mark idempotent,
and a default deadline for unary calls (streams run until their caller ends them). One thing
gRPC's retries cannot do is covered here too: a second try of a safe read that its replica had
already taken when it died (`unary_with_second_try`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from services.runtime.descriptors import method_rule

HEALTH_SERVICE = "grpc.health.v1.Health"

RETRY_POLICY: dict[str, Any] = {
    "maxAttempts": 3,
    "initialBackoff": "0.05s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


# How long a second try waits: the channel's balancer hears of the dead connection meanwhile,
# and the next pick goes to a replica that is still connected.
SECOND_TRY_PAUSE = 0.05


def channel_target(addresses: Sequence[str]) -> str:
    """A target naming every replica: `ipv4:a:p,b:p` for literals, DNS for one host name."""
    if not addresses:
        raise ValueError("a channel needs at least one address")
    hosts = [a.rpartition(":")[0].strip("[]") for a in addresses]
    try:
        versions = {ipaddress.ip_address(h).version for h in hosts}
    except ValueError:
        if len(addresses) != 1:
            raise ValueError(
                f"several replicas must be IP literals (or one DNS name): {addresses}"
            ) from None
        # One DNS name (a Kubernetes headless Service) resolves to every replica.
        return f"dns:///{addresses[0]}"
    if len(versions) != 1:
        raise ValueError(f"mixed IPv4 and IPv6 replicas: {addresses}")
    return f"ipv{versions.pop()}:{','.join(addresses)}"


def service_config(
    services: Iterable[ServiceDescriptor], *, deadline: float, probe: bool = False
) -> str:
    timeout = f"{deadline:.3f}s"
    services = list(services)
    if probe:
        # A health probe must see NOT_SERVING itself (health-checked subchannels would hide the
        # replica) and report what it sees at once (no retries). Its deadline is per call: in
        # grpcio 1.85 (aio) a service-config timeout under ~1.5 s fails every call at once.
        return json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
    retried: list[dict[str, str]] = [{"service": HEALTH_SERVICE}]
    retried_streams: list[dict[str, str]] = []
    streams: list[dict[str, str]] = []
    for service in services:
        for method in service.methods:
            name = {"service": service.full_name, "method": method.name}
            streaming = method.server_streaming or method.client_streaming
            if method_rule(method).idempotent:
                (retried_streams if streaming else retried).append(name)
            elif streaming:
                streams.append(name)
    method_config: list[dict[str, Any]] = [
        {"name": retried, "timeout": timeout, "retryPolicy": RETRY_POLICY},
        {"name": [{"service": s.full_name} for s in services], "timeout": timeout},
    ]
    # A stream (a download, a feed) lasts as long as its caller wants and is ended by it: no
    # default deadline. A method's own entry overrides its service's, timeout included.
    if retried_streams:
        method_config.append({"name": retried_streams, "retryPolicy": RETRY_POLICY})
    if streams:
        method_config.append({"name": streams})
    config: dict[str, Any] = {
        "loadBalancingConfig": [{"round_robin": {}}],
        # Subchannels whose replica reports NOT_SERVING leave the rotation (needs round_robin).
        "healthCheckConfig": {"serviceName": services[0].full_name if services else ""},
        "methodConfig": method_config,
    }
    return json.dumps(config)


# How often a channel pings a connection that has calls open but quiet. Servers must accept
# pings this often (SERVER_KEEPALIVE_OPTIONS), or they answer the third with GOAWAY
# "too_many_pings", which fails every call on that connection at once (seen as a 503).
KEEPALIVE_TIME_MS = 30_000
SERVER_KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    # gRPC's server default is 5 minutes: our channels' 30 s pings would be strikes. (Core's
    # GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS is spelled this way; an unknown
    # name is ignored without a word, as "min_recv_ping_interval..." was.)
    ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2),
    ("grpc.keepalive_permit_without_calls", 1),
)


def channel_options(
    services: Iterable[ServiceDescriptor], *, deadline: float, probe: bool
) -> list[tuple[str, Any]]:
    """The channel arguments of create_channel."""
    return [
        ("grpc.service_config", service_config(services, deadline=deadline, probe=probe)),
        ("grpc.enable_retries", 0 if probe else 1),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", 10_000),
        # An idle stream (a watch, a market feed) keeps pinging: gRPC would stop after two.
        ("grpc.http2.max_pings_without_data", 0),
        # Reconnect quickly when a replica comes back, rather than after gRPC's default 20 s.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2_000),
        ("grpc.max_receive_message_length", 32 * 1024 * 1024),
        ("grpc.max_send_message_length", 32 * 1024 * 1024),
    ]


def create_channel(
    addresses: Sequence[str],
    services: Iterable[ServiceDescriptor],
    *,
    deadline: float = 30.0,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    probe: bool = False,
) -> grpc.aio.Channel:
    """A channel to every replica in `addresses`; `probe=True` for health probes of one replica
    (no health-checked subchannels, no retries)."""
    options = channel_options(services, deadline=deadline, probe=probe)
    return grpc.aio.insecure_channel(
        channel_target(addresses), options=options, interceptors=list(interceptors) or None
    )


class UnaryCall(Protocol):
    """A bound unary-unary multicallable (`channel.unary_unary(...)`, a stub's method)."""

    def __call__(
        self, request: Any, *, timeout: float | None = ..., metadata: Any = ...
    ) -> Any: ...


def worth_a_second_try(error: grpc.aio.AioRpcError, *, retry_safe: bool, left: float) -> bool:
    """A call that may be sent once more: its method is safe to repeat (no side effects or
    idempotent, `method_rule(method).idempotent`), it failed UNAVAILABLE, and its deadline leaves
    time for another attempt."""
    return retry_safe and error.code() == grpc.StatusCode.UNAVAILABLE and left > 0


async def unary_with_second_try(
    call: UnaryCall, request: Any, *, deadline: float, metadata: Any, retry_safe: bool
) -> Any:
    """`call(request)`, sent once more through the same channel when it failed UNAVAILABLE and
    its method is safe to repeat, within the same `deadline` (seconds).

    gRPC's retryPolicy retries only attempts that received no response headers: a call the
    replica had accepted and started to answer when it was killed (the connection reset under
    it, "Stream removed") is committed and fails UNAVAILABLE with no retry. A safe read may be
    repeated: after a short pause round robin sends it to a replica that is still connected.
    Writes are never repeated here: the client repeats them, with their Idempotency-Key."""
    started = time.monotonic()
    try:
        return await call(request, timeout=deadline, metadata=metadata)
    except grpc.aio.AioRpcError as error:
        left = deadline - (time.monotonic() - started) - SECOND_TRY_PAUSE
        if not worth_a_second_try(error, retry_safe=retry_safe, left=left):
            raise
    await asyncio.sleep(SECOND_TRY_PAUSE)
    return await call(request, timeout=left, metadata=metadata)
