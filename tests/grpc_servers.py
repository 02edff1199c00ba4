"""A gRPC server a test builds itself (a double, a test API), served on a free local port."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc


@contextlib.asynccontextmanager
async def on_a_free_port(server: grpc.aio.Server) -> AsyncIterator[str]:
    """`server`, its handlers added, started on a free port of 127.0.0.1 and stopped at once
    when the block ends; yields its address."""
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)
