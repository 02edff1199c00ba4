"""The one generic handler: HTTP request -> gRPC call -> envelope, for every transcoded route.

Each route's Endpoint holds what was computed at start (its codec, its multicallable, its
service's circuit breaker); the handler itself has no per-route code.
"""

from __future__ import annotations

from typing import Any

import grpc
from aiohttp import web

from facade.breaker import CircuitBreaker
from facade.codec import RouteCodec
from facade.envelope import FACADE, ApiError, from_rpc_error, success
from facade.limits import client_ip
from facade.routes import Route
from services.runtime.context import CORRELATION_HEADER, correlation_id
from services.runtime.descriptors import method_path


class Endpoint:
    """One route, plus what start-up binds to it: the call into its service."""

    __slots__ = ("breaker", "call", "codec", "deadline", "route", "trust_proxy")

    def __init__(
        self,
        route: Route,
        codec: RouteCodec,
        breaker: CircuitBreaker,
        *,
        deadline: float,
        trust_proxy: bool,
    ) -> None:
        self.route = route
        self.codec = codec
        self.breaker = breaker
        self.deadline = deadline
        self.trust_proxy = trust_proxy
        self.call: Any = None

    def bind(self, channel: grpc.aio.Channel) -> None:
        method = self.route.method
        self.call = channel.unary_unary(
            method_path(method),
            request_serializer=self.codec.request_class.SerializeToString,
            # Raw bytes: the codec parses them, or finds their JSON already made (see encode_raw).
            response_deserializer=None,
            _registered_method=True,
        )


def _ascii(header: str, value: str) -> str:
    """gRPC metadata values must be printable ASCII; say so rather than fail inside gRPC."""
    if value.isascii() and value.isprintable():
        return value
    raise ApiError(400, "BAD_REQUEST", f"the {header} header must be printable ASCII")


def forwarded_metadata(request: web.Request, trust_proxy: bool) -> list[tuple[str, str]]:
    headers = request.headers
    metadata = [
        (CORRELATION_HEADER, correlation_id.get()),
        ("x-forwarded-for", client_ip(request, trust_proxy)),
    ]
    authorization = headers.get("Authorization")
    if authorization:
        metadata.append(("authorization", _ascii("Authorization", authorization)))
    idempotency_key = headers.get("Idempotency-Key")
    if idempotency_key:
        metadata.append(("idempotency-key", _ascii("Idempotency-Key", idempotency_key)))
    return metadata


async def transcode(endpoint: Endpoint, request: web.Request) -> web.Response:
    route = endpoint.route
    body = await request.read() if route.body else b""
    message = endpoint.codec.decode(request.match_info, request.query, body)
    metadata = forwarded_metadata(request, endpoint.trust_proxy)
    breaker = endpoint.breaker
    breaker.admit()
    try:
        reply = await endpoint.call(message, metadata=metadata, timeout=endpoint.deadline)
    except grpc.aio.AioRpcError as error:
        failure = from_rpc_error(error, route.service)
        unreached = error.code() == grpc.StatusCode.UNAVAILABLE and failure.service == FACADE
        breaker.record(reached=not unreached)
        raise failure from None
    except BaseException:
        breaker.abandon()
        raise
    breaker.record(reached=True)
    data, pagination = endpoint.codec.encode_raw(reply)
    return success(data, service=route.service, status=route.success_status, pagination=pagination)
