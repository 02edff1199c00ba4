"""A domain service's test double: a grpc.aio server at an address of its own that answers one
unary RPC with a fixed reply after `delay` seconds (counting its calls), holds every other RPC
of the service open without a word, and reports SERVING."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from tests.grpc_servers import on_a_free_port


class SlowService(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, service: str, method: str, reply: Message, delay: float) -> None:
        self._name = service
        self.method = f"/{service}/{method}"
        self.reply = reply.SerializeToString()
        self.delay = delay
        self.calls = 0

    def service_name(self) -> str:
        return self._name

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method == self.method:
            return grpc.unary_unary_rpc_method_handler(self._answer)
        if method.startswith(f"/{self.service_name()}/"):
            return grpc.unary_stream_rpc_method_handler(self._silent)
        return None

    async def _answer(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return self.reply

    async def _silent(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        await asyncio.Event().wait()
        yield b""


@contextlib.asynccontextmanager
async def serving(double: SlowService) -> AsyncIterator[str]:
    """The double on a free port; yields its address."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([double])
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for name in ("", double.service_name()):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    async with on_a_free_port(server) as address:
        yield address
