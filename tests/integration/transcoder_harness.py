"""What the tests of the facade's generic stream handlers share: a test-only API's real gRPC
server on port 0, and the facade's edge routing that API's HTTP routes to one handler (as
create_app does for the real APIs)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

from facade.breaker import CircuitBreaker
from facade.codec import Plans, RouteCodec
from facade.config import load_facade_config
from facade.limits import RateLimits
from facade.middleware import Edge
from facade.routes import routes_for_method
from facade.transcoding import Endpoint
from services.runtime.config import RuntimeConfig
from tests.conftest import users_codec
from tests.grpc_servers import on_a_free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def message_class(api: ServiceDescriptor, name: str) -> Any:
    return message_factory.GetMessageClass(api.file.message_types_by_name[name])


@asynccontextmanager
async def serving(
    api: ServiceDescriptor, methods: Mapping[str, grpc.RpcMethodHandler]
) -> AsyncIterator[str]:
    """The test API's methods served by a real gRPC server on port 0; yields its address."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(api.full_name, methods),))
    async with on_a_free_port(server) as address:
        yield address


def transcoder_app(
    api: ServiceDescriptor,
    config_for: Callable[..., RuntimeConfig],
    address: str,
    handler_for: Callable[[Endpoint], Handler],
    **endpoint_options: Any,
) -> web.Application:
    """The facade's edge over every HTTP route of the test API (package: the proto package's
    first part), each handled by `handler_for(endpoint)`, the endpoints bound to `address`."""
    package = api.full_name.split(".", 1)[0]
    config = load_facade_config({}, runtime=config_for("facade"))
    edge = Edge(config, RateLimits(config, users_codec()))
    app = web.Application()
    plans = Plans()
    endpoints = []
    for method in api.methods:
        for route in routes_for_method(package, method):
            endpoint = Endpoint(
                route, RouteCodec(route, plans), CircuitBreaker(package), **endpoint_options
            )
            endpoints.append(endpoint)
            handler = edge.wrap(handler_for(endpoint), route.template)
            app.router.add_route(route.verb, route.aiohttp_path, handler)

    async def channel(app: web.Application) -> AsyncIterator[None]:
        async with grpc.aio.insecure_channel(address) as opened:
            for endpoint in endpoints:
                endpoint.bind(opened)
            yield

    app.cleanup_ctx.append(channel)
    return app
