"""The send path of every WebSocket: frames built once, written together, slow sockets dropped.

Sending never waits. A message is encoded once, as a ready-made frame, and queued for each
socket that gets it; each socket's frames go out in one write per 10 ms window (Outbox). What
the kernel has not taken yet waits in the socket's transport: that is the socket's send queue.
A socket with more than `ws_send_queue_bytes` waiting there is dropped (closed 4008, logged),
so a slow client never slows the others down nor grows the facade's memory. The kernel's own
send buffer for the socket is capped at the same size.
"""

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

SOCKETS_DROPPED = Counter(
    "stockfolio_ws_dropped_total",
    "WebSocket connections closed by the facade, by reason.",
    ["reason"],
)


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked WebSocket text frame (RFC 6455, 5.2) holding `payload` (UTF-8):
    built once per message and written as-is to every socket that gets it."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


# A ping with no payload (RFC 6455, 5.5.2): the heartbeat's, the same bytes for every socket.
PING_FRAME = b"\x89\x00"


def pong_frame(payload: bytes) -> bytes:
    """The pong answering a client's ping: its payload back (at most 125 bytes, 5.5)."""
    return struct.pack("!BB", 0x8A, len(payload)) + payload


def json_frame(message: Mapping[str, Any]) -> bytes:
    # ASCII JSON (ensure_ascii), so always valid UTF-8 text.
    return text_frame(json.dumps(message, separators=(",", ":")).encode())


class SocketError(Exception):
    """A message the socket refuses, or a stream that failed: answered
    `{"type": "error", "code", "message", "retryAfter"?}` (whole seconds, at least 1)."""

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def reply(self, **extra: Any) -> dict[str, Any]:
        found: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.retry_after is not None:
            found["retryAfter"] = max(1, round(self.retry_after + 0.49))
        return found | extra


class Outbox:
    """Frames for many sockets, written together. A price tick reaches the facade as one gRPC
    message per symbol, and one write (one system call) per frame and socket is most of a
    fan-out's cost (measured on this machine: 10 frames in one write cost about a fifth of 10
    writes)."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._dirty: list[ClientSocket] = []
        self._timer: asyncio.TimerHandle | None = None

    def mark(self, client: ClientSocket) -> None:
        """`client` has frames waiting: flush it with the others at the end of the window."""
        self._dirty.append(client)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window, self.flush)

    def flush(self) -> None:
        """Write every socket's waiting frames now (also called before the window ends by a
        sender that knows no more frames are coming: a whole market step, say)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        dirty, self._dirty = self._dirty, []
        for client in dirty:
            client.flush()


class ClientSocket:
    """One accepted WebSocket, as the senders see it."""

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
        # Pinged by the heartbeat and not heard from since (facade/sockets.py, _heartbeats);
        # busy: a message of its is being handled (its pong may wait behind it, unread).
        self.silent = False
        self.busy = False
        # The kernel's send buffer is capped too: left alone, Linux grows it to megabytes
        # (tcp_wmem) before a stalled client shows in the transport's own buffer, and the drop
        # would come late, with that much memory held for a client that reads nothing.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limit)

    def send(self, frame: bytes) -> None:
        """Queue a ready-made frame, written with the others of its window; never waits."""
        if self._done:
            return
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
        pending = self._pending
        if not pending or self._done:
            pending.clear()
            return
        transport = self._transport
        if self.ws.closed or transport.is_closing():
            self._done = True
            pending.clear()
            return
        if transport.get_write_buffer_size() > self._limit:
            self._done = True
            SOCKETS_DROPPED.labels("slow").inc()
            log.warning(
                "dropping a slow websocket",
                extra={"path": self.path, "pendingBytes": transport.get_write_buffer_size()},
            )
            self._closer(self, TOO_SLOW_CLOSE, "too slow: messages were piling up")
            pending.clear()
            return
        transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        pending.clear()

    def error(self, code: str, message: str) -> None:
        self.refuse(SocketError(code, message))

    def refuse(self, error: SocketError, **extra: Any) -> None:
        self.send_now(json_frame(error.reply(**extra)))

    @property
    def closed(self) -> bool:
        return self._done or self.ws.closed

    async def writable(self, below: int) -> None:
        """Wait until fewer than `below` bytes wait to be taken by the client: for a sender
        that can slow its source down (a terminal's output stream) instead of being dropped."""
        transport = self._transport
        while not self._done and transport.get_write_buffer_size() >= below:
            if transport.is_closing():
                return
            await asyncio.sleep(WRITABLE_POLL)

    def abort(self) -> None:
        """Cut the connection at once: a client that does not answer pings would not answer a
        closing handshake either."""
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
