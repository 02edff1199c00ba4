"""Our servers accept our channels' keepalive pings, tried for real on a quiet stream: a server
refuses pings closer than its minimum (gRPC's default: 5 minutes) and at the third answers
GOAWAY "too_many_pings", failing every call on the connection. The option naming that minimum
was misspelled (gRPC ignores an unknown name without a word), so `make run` logged GOAWAYs
every few minutes. Scaled down: pings every 300 ms against a minimum of half that."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.runtime.channels import SERVER_KEEPALIVE_OPTIONS, channel_options

PING_MS = 300


def scaled(
    options: tuple[tuple[str, int], ...] | list[tuple[str, object]],
) -> list[tuple[str, object]]:
    """The same options, with every keepalive time a hundredth as long."""
    return [
        (
            name,
            PING_MS // 2
            if "interval" in name
            else PING_MS
            if name == "grpc.keepalive_time_ms"
            else value,
        )
        for name, value in options
    ]


async def test_a_quiet_stream_outlives_many_keepalive_pings() -> None:
    server = grpc.aio.server(options=scaled(SERVER_KEEPALIVE_OPTIONS))
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    # A client's own floor between pings (10 s in gRPC core) scaled down with the rest.
    client = [
        *scaled(channel_options([], deadline=30.0, probe=False)),
        ("grpc.http2.min_time_between_pings_ms", PING_MS // 2),
    ]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=client)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        # Fifteen pings' time with nothing sent: a server refusing them closes the stream by the
        # third, and the read below ends with UNAVAILABLE instead of the change made after.
        await asyncio.sleep(15 * PING_MS / 1000)
        await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        changed = await asyncio.wait_for(watch.read(), 5)
        assert changed.status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
    finally:
        await channel.close()
        await server.stop(0)
