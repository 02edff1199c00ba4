"""The generic handler for server-streaming routes: one gRPC stream -> one streamed HTTP body.

What a client gets:

- a `google.api.HttpBody` stream: the chunks' bytes as the body, with the first chunk's content
  type; when the request chooses a `format`, the body is a download (`Content-Disposition:
  attachment`, named after the path and the content type, e.g. `export.csv`);
- any other stream: Server-Sent Events when the client accepts `text/event-stream` (each message
  is `event: message` / `data: <the message as JSON>`, comment lines are heartbeats), else
  newline-delimited JSON (`application/x-ndjson`, one message per line). Each message is written
  as itself (or its response_body field), lowerCamelCase with short enums: no wrapper.

Errors. The status line is chosen when the stream commits: at its first message, at its end, or
when the service sends its response headers before a first message (a feed that is quiet at
first), whichever comes first; a raw body waits for its first chunk (it names the content type).
A call that fails before then is answered like a unary route: the envelope and the mapped
status, never a 200. After that, a failure ends the stream with an error record holding the
envelope's error part: SSE `event: error`, NDJSON a last line `{"error": CODE, "message",
"details"?}`. A raw body cannot say it in-band: its connection is closed without the final
chunk, so the client sees a truncated transfer, never a complete-looking file.

A client that goes away cancels the call: at once where aiohttp cancels handlers, else at the
stream's next write or heartbeat tick.

Sessions. A stream lives only as long as its caller's session, as a WebSocket does: the session
is checked again every WS_SESSION_RECHECK seconds (facade/sessions.py), and a logout ends the
stream within that time with the error record (the users service's 401 code, e.g.
SESSION_REVOKED), or, for a raw body, by cutting it off. A file watch also takes one of its
user's FILE_WATCHES_PER_USER slots while open (429 TOO_MANY_OPEN beyond).
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from aiohttp import payload, web
from aiohttp.abc import AbstractStreamWriter
from google.api import httpbody_pb2

from facade.codec import RouteCodec
from facade.envelope import ApiError, error_detail, from_rpc_error
from facade.quotas import WATCHES, Slot, UserCaps
from facade.routes import Route
from facade.sessions import LiveSessions
from facade.transcoding import Endpoint, forwarded_metadata, outcome, request_message
from services.runtime.context import Identity, correlation_id
from services.runtime.errors import Unauthenticated

log = logging.getLogger("stockfolio.facade")

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
OCTET_STREAM = "application/octet-stream"
DEFAULT_HEARTBEAT = 15.0
# Streams that watch something until the client leaves: each holds a slot of its user's
# FILE_WATCHES_PER_USER.
WATCH_METHODS = frozenset({"stockfolio.workspace.v1.WorkspaceService.WatchFiles"})


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Framing(Protocol):
    """How one stream's messages become bytes."""

    content_type: str
    heartbeat: bytes  # written when the stream is quiet for a while; b"": none

    def message(self, raw: bytes) -> bytes: ...

    def error(self, detail: dict[str, Any]) -> bytes | None:
        """The record that ends a failed stream; None when the format has no room for one."""
        ...


class RawBody:
    heartbeat = b""

    def __init__(self, content_type: str) -> None:
        self.content_type = content_type

    def message(self, raw: bytes) -> bytes:
        data: bytes = httpbody_pb2.HttpBody.FromString(raw).data
        return data

    def error(self, detail: dict[str, Any]) -> bytes | None:
        return None


class JsonLines:
    content_type = NDJSON
    # NDJSON has no comment syntax, and a blank line trips strict readers: no heartbeat.
    heartbeat = b""

    def __init__(self, codec: RouteCodec) -> None:
        self._codec = codec

    def message(self, raw: bytes) -> bytes:
        return _dump(self._codec.encode_raw(raw)[0]) + b"\n"

    def error(self, detail: dict[str, Any]) -> bytes | None:
        return _dump(detail) + b"\n"


class ServerSentEvents:
    content_type = SSE
    heartbeat = b": keep-alive\n\n"

    def __init__(self, codec: RouteCodec) -> None:
        self._codec = codec

    def message(self, raw: bytes) -> bytes:
        # JSON text never holds a raw newline, so one data line carries the whole message.
        return b"event: message\ndata: " + _dump(self._codec.encode_raw(raw)[0]) + b"\n\n"

    def error(self, detail: dict[str, Any]) -> bytes | None:
        return b"event: error\ndata: " + _dump(detail) + b"\n\n"


class AccessReader(Protocol):
    """Checks an access token's signature and expiry (the runtime's token verifier)."""

    def read_access(self, token: str, *, allow_service: bool = False) -> Identity: ...


@dataclass(frozen=True)
class StreamGuard:
    """What keeps a stream within its caller's session and their caps."""

    sessions: LiveSessions
    caps: UserCaps
    tokens: AccessReader

    def caller(self, request: web.Request) -> Identity | None:
        """The bearer token's identity (its signature checked here, its session by the
        service); None without a readable token: the service answers that call with 401."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            return self.tokens.read_access(token.strip())
        except Unauthenticated:
            return None

    def watch_slot(self, route: Route, caller: Identity | None) -> Slot | None:
        if caller is None or route.method.full_name not in WATCH_METHODS:
            return None
        return self.caps.take(WATCHES, caller.user_id)


class Held:
    """A committed stream's hold on its session (and its watch slot), released at its end."""

    def __init__(self, guard: StreamGuard, caller: Identity, slot: Slot | None) -> None:
        self._guard = guard
        self._caller = caller
        self._slot = slot
        self.ended: asyncio.Future[ApiError] = asyncio.get_running_loop().create_future()
        guard.sessions.hold(
            caller.session_id,
            caller.token,
            caller.expires_at.timestamp(),
            self,
            self._session_ended,
        )

    def _session_ended(self, error: ApiError) -> None:
        if not self.ended.done():
            self.ended.set_result(error)

    def release(self) -> None:
        self._guard.sessions.release(self._caller.session_id, self)
        if self._slot is not None:
            self._slot.release()
            self._slot = None
        if not self.ended.done():
            self.ended.cancel()


def wants_events(request: web.Request) -> bool:
    return SSE in request.headers.get("Accept", "").lower()


def download_filename(base: str, content_type: str) -> str:
    extension = mimetypes.guess_extension(content_type.split(";", 1)[0].strip()) or ""
    return base + extension


async def _commit(call: Any, *, first_message: bool) -> asyncio.Future[Any]:
    """Wait until the stream may commit to a 200; return the read of its first message (done,
    or still pending when the service sent its headers first). Raises the call's error when it
    failed before committing."""
    read: asyncio.Future[Any] = asyncio.ensure_future(call.read())
    headers: asyncio.Future[Any] | None = None
    try:
        if not first_message:
            headers = asyncio.ensure_future(call.initial_metadata())
            await asyncio.wait((read, headers), return_when=asyncio.FIRST_COMPLETED)
            # A call that fails straight away answers with trailers only: its "headers"
            # arrive with its end, and the call is then done.
            if not read.done() and not call.done():
                return read
        await read
        return read
    except BaseException:
        read.cancel()
        if headers is not None:
            headers.cancel()
        raise


class StreamBody(payload.Payload):
    """The rest of a committed stream, written by aiohttp as the (chunked) response body."""

    def __init__(
        self,
        call: Any,
        pending: asyncio.Future[Any],
        framing: Framing,
        *,
        request: web.Request,
        service: str,
        heartbeat: float,
        held: Held | None = None,
    ) -> None:
        super().__init__(call, content_type=framing.content_type)
        self._held = held
        self._call = call
        self._pending = pending
        self._framing = framing
        self._request = request
        self._service = service
        self._heartbeat = heartbeat
        # aiohttp writes the body after the edge has returned: keep the request's id for logs.
        self._correlation_id = correlation_id.get()

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a stream is written once, as it arrives; it cannot be decoded")

    async def write(self, writer: AbstractStreamWriter) -> None:
        token = correlation_id.set(self._correlation_id)
        try:
            await self._pump(writer)
        finally:
            self._end()
            correlation_id.reset(token)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        await self.write(writer)

    async def close(self) -> None:
        self._end()

    def _end(self) -> None:
        """Cancel the call (a no-op once it has ended): nobody reads it any more."""
        if self._held is not None:
            self._held.release()
        pending = self._pending
        if not pending.done():
            pending.cancel()
        elif not pending.cancelled():
            pending.exception()  # retrieved: an error nobody reads is not reported again
        self._call.cancel()

    def _client_gone(self) -> bool:
        transport = self._request.transport
        return transport is None or transport.is_closing()

    async def _pump(self, writer: AbstractStreamWriter) -> None:
        framing = self._framing
        ended = self._held.ended if self._held is not None else None
        if not self._pending.done():
            # Committed on the service's headers, before a first message: the client gets the
            # status line now (aiohttp would hold it back until the first body bytes).
            send_headers = getattr(writer, "send_headers", None)
            if callable(send_headers):
                send_headers()
        while True:
            read = self._pending
            if not read.done():
                await asyncio.wait(
                    (read,) if ended is None else (read, ended),
                    timeout=self._heartbeat,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if ended is not None and ended.done() and not ended.cancelled():
                    await self._end_session(writer, ended.result())
                    return
                if not read.done():
                    if self._client_gone():
                        return
                    if framing.heartbeat:
                        await writer.write(framing.heartbeat)
                    continue
            try:
                raw = read.result()
            except grpc.aio.AioRpcError as error:
                await self._fail(writer, error)
                return
            if raw is grpc.aio.EOF:
                return
            await writer.write(framing.message(raw))
            self._pending = asyncio.ensure_future(self._call.read())

    async def _fail(self, writer: AbstractStreamWriter, error: grpc.aio.AioRpcError) -> None:
        failure = from_rpc_error(error, self._service)
        log.warning(
            "stream failed midway",
            extra={"path": self._request.path, "code": failure.code, "upstream": self._service},
        )
        await self._close_with(writer, failure)

    async def _end_session(self, writer: AbstractStreamWriter, error: ApiError) -> None:
        log.info(
            "stream ended with its session",
            extra={"path": self._request.path, "code": error.code},
        )
        await self._close_with(writer, error)

    async def _close_with(self, writer: AbstractStreamWriter, failure: ApiError) -> None:
        """End the stream with its error record, or cut a raw body off."""
        record = self._framing.error(error_detail(failure))
        if record is not None:
            await writer.write(record)
            return
        # No final chunk: the client sees a truncated transfer, not a complete file.
        transport = self._request.transport
        if transport is not None:
            transport.close()


async def transcode_stream(
    endpoint: Endpoint,
    request: web.Request,
    *,
    heartbeat: float = DEFAULT_HEARTBEAT,
    guard: StreamGuard | None = None,
) -> web.Response:
    route = endpoint.route
    message = await request_message(endpoint, request)
    metadata = forwarded_metadata(request)
    caller = guard.caller(request) if guard is not None and not route.public else None
    slot = guard.watch_slot(route, caller) if guard is not None else None
    try:
        endpoint.breaker.admit()
        # No deadline: a stream runs until it ends, its client goes away or its session ends.
        call = endpoint.call(message, metadata=metadata)
        with outcome(endpoint, call):
            pending = await _commit(call, first_message=route.raw_body)
    except BaseException:
        if slot is not None:
            slot.release()
        raise
    held = Held(guard, caller, slot) if guard is not None and caller is not None else None
    headers: dict[str, str] = {}
    framing: Framing
    if route.raw_body:
        first = pending.result()
        empty = first is grpc.aio.EOF
        chunk = httpbody_pb2.HttpBody() if empty else httpbody_pb2.HttpBody.FromString(first)
        framing = RawBody(chunk.content_type or OCTET_STREAM)
        if route.download_name:
            filename = download_filename(route.download_name, framing.content_type)
            headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    elif wants_events(request):
        framing = ServerSentEvents(endpoint.codec)
        headers["X-Accel-Buffering"] = "no"  # proxies must pass events on as they come
    else:
        framing = JsonLines(endpoint.codec)
    body = StreamBody(
        call,
        pending,
        framing,
        request=request,
        service=route.service,
        heartbeat=heartbeat,
        held=held,
    )
    return web.Response(body=body, status=route.success_status, headers=headers)
