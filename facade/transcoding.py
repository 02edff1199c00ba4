"""The one generic handler: HTTP request -> gRPC call -> envelope, for every unary route.

Each route's Endpoint holds what was computed at start (its codec, its multicallable, its
service's circuit breaker); the handler itself has no per-route code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import grpc
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from google.protobuf.message import Message

from facade.breaker import CircuitBreaker
from facade.codec import RouteCodec
from facade.envelope import FACADE, ApiError, from_rpc_error, success
from facade.routes import Route
from services.runtime.channels import unary_with_second_try
from services.runtime.context import CORRELATION_HEADER, client_address, correlation_id
from services.runtime.descriptors import method_path

# Failures where the service never answered: down, or still silent at the deadline.
GATEWAY_FAILURES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class Endpoint:
    """One route, plus what start-up binds to it: the call into its service."""

    __slots__ = ("breaker", "call", "channel", "codec", "deadline", "route", "upload_limit")

    def __init__(
        self,
        route: Route,
        codec: RouteCodec,
        breaker: CircuitBreaker,
        *,
        deadline: float,
        upload_limit: int = 20 * 1024 * 1024,
    ) -> None:
        self.route = route
        self.codec = codec
        self.breaker = breaker
        self.deadline = deadline
        # Bytes a streamed request body may hold (client-streaming routes, facade/uploads.py).
        self.upload_limit = upload_limit
        self.call: Any = None
        self.channel: grpc.aio.Channel | None = None

    def bind(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        method = self.route.method
        # Raw bytes: the codec parses them, or finds their JSON already made (see encode_raw).
        if self.route.streamed_body:
            bind = channel.stream_unary
        elif self.route.streaming:
            bind = channel.unary_stream
        else:
            bind = channel.unary_unary
        self.call = bind(
            method_path(method),
            request_serializer=self.codec.request_class.SerializeToString,
            response_deserializer=None,
            _registered_method=True,
        )


def _ascii(header: str, value: str) -> str:
    """gRPC metadata values must be printable ASCII; say so rather than fail inside gRPC."""
    if value.isascii() and value.isprintable():
        return value
    raise ApiError(400, "BAD_REQUEST", f"the {header} header must be printable ASCII")


def forwarded_metadata(request: web.Request) -> list[tuple[str, str]]:
    headers = request.headers
    metadata = [
        (CORRELATION_HEADER, correlation_id.get()),
        # The client address the edge resolved: the only hop a service needs to believe.
        ("x-forwarded-for", client_address.get()),
    ]
    authorization = headers.get("Authorization")
    if authorization:
        metadata.append(("authorization", _ascii("Authorization", authorization)))
    idempotency_key = headers.get("Idempotency-Key")
    if idempotency_key:
        metadata.append(("idempotency-key", _ascii("Idempotency-Key", idempotency_key)))
    return metadata


def failed(endpoint: Endpoint, error: grpc.aio.AioRpcError) -> ApiError:
    """A call that failed, as the envelope error; the breaker counts whether it was reached.
    A call the facade's own deadline ended counts as not reached, as Envoy's outlier detection
    counts a gateway timeout: a service that hangs opens the circuit like one that is down.

    A call cut off with its replica (UNAVAILABLE from gRPC itself) while the service's channel
    is still READY, another replica connected and serving, tells nothing of the service: it is
    not counted. A kill -9 fails every call in flight on that replica at once, and counting
    them opened the circuit on a service that was answering (the fault suite's replica kills:
    reads refused with 503 SERVICE_UNAVAILABLE just after the kill)."""
    failure = from_rpc_error(error, endpoint.route.service)
    unreached = failure.service == FACADE and error.code() in GATEWAY_FAILURES
    if unreached and error.code() == grpc.StatusCode.UNAVAILABLE and _still_served(endpoint):
        endpoint.breaker.abandon()
    else:
        endpoint.breaker.record(reached=not unreached)
    return failure


def _still_served(endpoint: Endpoint) -> bool:
    channel = endpoint.channel
    return channel is not None and channel.get_state() == grpc.ChannelConnectivity.READY


@contextlib.contextmanager
def outcome(endpoint: Endpoint, call: grpc.aio.Call | None = None) -> Iterator[None]:
    """Around the steps of an admitted call that settle it: the breaker hears how it went, a
    failed call leaves as its envelope error, and one given up on (the client gone, a body too
    large) is cancelled so that the service drops it."""
    try:
        yield
    except grpc.aio.AioRpcError as error:
        raise failed(endpoint, error) from None
    except BaseException:
        endpoint.breaker.abandon()
        if call is not None:
            call.cancel()
        raise
    endpoint.breaker.record(reached=True)


async def request_message(endpoint: Endpoint, request: web.Request) -> Message:
    """The RPC's request, from the route's path variables, query string and body."""
    body = await read_body(request, endpoint.deadline) if endpoint.route.body else b""
    return endpoint.codec.decode(request.match_info, request.query, body)


async def read_body(request: web.Request, deadline: float) -> bytes:
    """The whole body, or 408 when none of it has arrived for `deadline` seconds (a body that
    stops arriving held its handler and up to MAX_BODY_BYTES for good: aiohttp has no read
    timeout; one that keeps arriving, however slowly, is read), or 400 when it cannot be read
    as sent (a gzip body that does not inflate)."""
    arrived = request.content.total_bytes
    reading = asyncio.ensure_future(request.read())
    try:
        while True:
            done, _ = await asyncio.wait({reading}, timeout=deadline)
            if done:
                return reading.result()
            if request.content.total_bytes == arrived:
                silent = f"no part of the request body arrived for {deadline:g} s"
                raise ApiError(408, "REQUEST_TIMEOUT", silent)
            arrived = request.content.total_bytes
    except RequestPayloadError:
        raise ApiError(
            400, "BAD_REQUEST", "the request body cannot be read as sent (its Content-Encoding?)"
        ) from None
    finally:
        reading.cancel()


async def transcode(endpoint: Endpoint, request: web.Request) -> web.Response:
    route = endpoint.route
    message = await request_message(endpoint, request)
    metadata = forwarded_metadata(request)
    endpoint.breaker.admit()
    with outcome(endpoint):
        # A safe read its replica died with is tried once more, on another one (channels.py).
        reply = await unary_with_second_try(
            endpoint.call,
            message,
            deadline=endpoint.deadline,
            metadata=metadata,
            retry_safe=route.rule.idempotent,
        )
    data, pagination = endpoint.codec.encode_raw(reply)
    return success(data, service=route.service, status=route.success_status, pagination=pagination)
