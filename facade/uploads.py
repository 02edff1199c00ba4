"""The generic handler for client-streaming routes: one streamed HTTP body -> one request stream.

A client-streaming RPC gets a REST route when its rule's `body` names a `google.api.HttpBody`
request field (facade/routes.py). The raw HTTP request body is then never read whole: it is cut
into chunks of at most CHUNK_BYTES as it arrives, and each chunk goes to the service as it comes:

- the first message carries the fields from the path and the query string, and the body field
  with the request's `Content-Type` and the first chunk (empty data for an empty body);
- every further message carries only the body field, with the next chunk's `data`.

The service answers once, as a unary RPC does: the same envelope and status table. Uploads have
their own size limit (`MAX_UPLOAD_BYTES`, 20 MB by default) instead of the 10 MB body limit: a
`Content-Length` above it is refused before any call, and a body that grows past it while it
streams cancels the call; both are 413. The call has no overall deadline (a slow link may take
long), but a body that stops arriving for RPC_DEADLINE seconds is 408. A client that goes away
midway cancels the call too, so the service can drop what it received (a cancelled upload
leaves nothing written).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.message import Message

from facade.envelope import ApiError, success
from facade.transcoding import Endpoint, forwarded_metadata, outcome

CHUNK_BYTES = 256 * 1024


def too_large(limit: int) -> ApiError:
    megabytes = limit / (1024 * 1024)
    size = f"{megabytes:g} MB" if megabytes == int(megabytes) else f"{limit} bytes"
    return ApiError(413, "PAYLOAD_TOO_LARGE", f"the upload is larger than the limit of {size}")


def _chunk_message(endpoint: Endpoint, field: str, data: bytes) -> Message:
    message = endpoint.codec.request_class()
    getattr(message, field).data = data
    return message


async def _send(endpoint: Endpoint, request: web.Request, call: Any, first: Message) -> None:
    """Write the body to the call chunk by chunk; stops early when the call has ended."""
    route = endpoint.route
    field = route.body
    limit = endpoint.upload_limit
    content_type = request.headers.get("Content-Type", "")
    if not content_type.isascii():  # aiohttp keeps undecodable header bytes as surrogates
        raise ApiError(400, "BAD_REQUEST", "the Content-Type header must be ASCII")
    getattr(first, field).content_type = content_type
    sent = 0
    pending: Message | None = first
    chunks = request.content.iter_chunked(CHUNK_BYTES)
    while True:
        try:
            async with asyncio.timeout(endpoint.deadline):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise ApiError(
                408,
                "REQUEST_TIMEOUT",
                f"no part of the request body arrived for {endpoint.deadline:g} s",
            ) from None
        sent += len(chunk)
        if sent > limit:
            raise too_large(limit)
        if pending is not None:
            getattr(pending, field).data = chunk
            message, pending = pending, None
        else:
            message = _chunk_message(endpoint, field, chunk)
        if call.done():
            return
        await call.write(message)
    if pending is not None:  # an empty body: the first message still goes
        await call.write(pending)
    await call.done_writing()


async def transcode_upload(endpoint: Endpoint, request: web.Request) -> web.Response:
    route = endpoint.route
    limit = endpoint.upload_limit
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    first = endpoint.codec.decode(request.match_info, request.query, b"")
    metadata = forwarded_metadata(request)
    endpoint.breaker.admit()
    # No deadline on the whole call: a large body on a slow link takes what it takes. A client
    # that stops sending for RPC_DEADLINE seconds is answered 408 instead.
    call = endpoint.call(metadata=metadata)
    with outcome(endpoint, call):
        # A call that ends while the body streams (the service refused it): its status says why.
        with contextlib.suppress(asyncio.InvalidStateError, grpc.aio.AioRpcError):
            await _send(endpoint, request, call, first)
        reply = await call
    data, _ = endpoint.codec.encode_raw(reply)
    return success(data, service=route.service, status=route.success_status)


__all__ = ["CHUNK_BYTES", "transcode_upload"]
