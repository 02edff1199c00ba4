"""The send path of every WebSocket: frames built once, written together, slow sockets dropped
(README, "Streams and WebSockets"). Sending never waits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import Counter

log = logging.getLogger("stockfolio.facade")

TOO_SLOW_CLOSE = 4008
# How long a closing handshake may take before the connection is simply cut.
CLOSE_GRACE = 5.0
# How often a sender waiting for a congested socket to drain looks again.
WRITABLE_POLL = 0.005
# A ping with no payload (RFC 6455, 5.5.2): the heartbeat's, the same bytes for every socket.
PING_FRAME = b"\x89\x00"

SOCKETS_DROPPED = Counter(
    "stockfolio_ws_dropped_total",
    "WebSocket connections closed by the facade, by reason.",
    ["reason"],
)


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame (RFC 6455, 5.2), built once per message and written as-is
    to every socket that gets it."""
    length = len(payload)
    if length < 126:
        return struct.pack("!BB", 0x81, length) + payload
    if length < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, length) + payload
    return struct.pack("!BBQ", 0x81, 127, length) + payload


def pong_frame(payload: bytes) -> bytes:
    """The pong answering a client's ping: its payload back (at most 125 bytes, 5.5)."""
    return struct.pack("!BB", 0x8A, len(payload)) + payload


def json_frame(message: Mapping[str, Any]) -> bytes:
    # ASCII JSON (ensure_ascii), so always valid UTF-8 text.
    return text_frame(json.dumps(message, separators=(",", ":")).encode())


class SocketError(Exception):
    """A message refused or a stream failed: `{"type": "error", "code", "message",
    "retryAfter"?}` (whole seconds, at least 1)."""

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.retry_after = code, message, retry_after

    def reply(self, **extra: Any) -> dict[str, Any]:
        found: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.retry_after is not None:
            found["retryAfter"] = max(1, round(self.retry_after + 0.49))
        return found | extra


class Outbox:
    """Frames for many sockets, written at the end of a window, one write per socket: one write
    per frame and socket was most of a fan-out's cost (10 frames in one write cost about a fifth
    of 10 writes, measured here)."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._dirty: list[ClientSocket] = []
        self._timer: asyncio.TimerHandle | None = None

    def mark(self, client: ClientSocket) -> None:
        self._dirty.append(client)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window, self.flush)

    def flush(self) -> None:
        """Write every socket's waiting frames now (also before the window ends, by a sender
        that knows no more are coming: a whole market step)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        dirty, self._dirty = self._dirty, []
        for client in dirty:
            client.flush()


class ClientSocket:
    """One accepted WebSocket, as the senders see it. What the kernel has not taken yet waits in
    its transport; past `limit` bytes there, the socket is dropped (4008)."""

    __slots__ = (
        "_closer",
        "_done",
        "_limit",
        "_outbox",
        "_pending",
        "_transport",
        "busy",
        "path",
        "silent",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        *,
        path: str,
        limit: int,
        outbox: Outbox,
        closer: Callable[[ClientSocket, int, str], None],
    ) -> None:
        self.ws = ws
        self.path = path
        self._transport = transport
        self._limit = limit
        self._outbox = outbox
        self._closer = closer
        self._pending: list[bytes] = []
        self._done = False
        # silent: pinged by the heartbeat and not heard from since; busy: a message of its is
        # being handled (its pong may wait behind it, unread).
        self.silent = False
        self.busy = False
        # Left alone, Linux grows the kernel's send buffer to megabytes (tcp_wmem) before a
        # stalled client shows in the transport's buffer: the drop would come late.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limit)

    def send(self, frame: bytes) -> None:
        """Queue a ready-made frame, written with the others of its window; never waits."""
        if not self._done:
            if not self._pending:
                self._outbox.mark(self)
            self._pending.append(frame)

    def send_now(self, frame: bytes) -> None:
        """Write a frame at once, after those queued (a reply: pong, auth_ok, an error)."""
        if not self._done:
            self._pending.append(frame)
            self.flush()

    def flush(self) -> None:
        """Write what is queued; a socket too far behind is dropped instead."""
        pending, transport = self._pending, self._transport
        if pending and not self._done:
            if self.ws.closed or transport.is_closing():
                self._done = True
            elif (waiting := transport.get_write_buffer_size()) > self._limit:
                self._done = True
                SOCKETS_DROPPED.labels("slow").inc()
                log.warning(
                    "dropping a slow websocket", extra={"path": self.path, "pendingBytes": waiting}
                )
                self._closer(self, TOO_SLOW_CLOSE, "too slow: messages were piling up")
            else:
                transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        pending.clear()  # kept, not replaced: a new list per socket and step outlived young GCs

    def error(self, code: str, message: str) -> None:
        self.refuse(SocketError(code, message))

    def refuse(self, error: SocketError, **extra: Any) -> None:
        self.send_now(json_frame(error.reply(**extra)))

    @property
    def closed(self) -> bool:
        return self._done or self.ws.closed

    async def writable(self, below: int) -> None:
        """Wait until fewer than `below` bytes wait for the client: for a sender that can slow
        its source down (a terminal's output) instead of being dropped."""
        transport = self._transport
        while not self._done and transport.get_write_buffer_size() >= below:
            if transport.is_closing():
                return
            await asyncio.sleep(WRITABLE_POLL)

    def abort(self) -> None:
        """Cut the connection: a client that answers no ping would not close cleanly either."""
        self._done = True
        self._pending.clear()
        self._transport.abort()

    async def close(self, code: int, reason: str) -> None:
        """The closing handshake, or a cut connection when the client does not take part."""
        self._done = True
        self._pending.clear()
        try:
            async with asyncio.timeout(CLOSE_GRACE):
                await self.ws.close(code=code, message=reason.encode()[:120])
        except TimeoutError:
            self._transport.abort()
