"""A lean WebSocket client for the benchmarks' sockets (RFC 6455, client side).

Why not aiohttp's client here: the benchmark runs 10,000 subscribers on the same two cores as
the facade it measures, and with aiohttp each received message costs a parser pass, a queue
hand-off and a task wake-up per socket - on this machine that client work, not the facade, was
most of the measured delivery time. This client parses the frames of each read in one loop and
calls back once per text message with the time the read's data **arrived**: the kernel's receive
timestamp (SO_TIMESTAMPNS), not the moment this process got round to reading it. A fleet of real
subscribers each reads on its own machine; here thousands share one process, and the last of
them was read a step's worth of client work late (`read_lags` keeps how late, to print). It
speaks the real protocol (handshake with Sec-WebSocket-Accept checked, masked client frames,
ping answered with pong, the closing handshake) and refuses what the facade never sends
(fragmented or masked server frames) rather than misreading it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct
import time
from collections.abc import Callable

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
NO_STATUS = 1005
ABNORMAL = 1006
CLOSE_TIMEOUT = 5.0
HANDSHAKE_TIMEOUT = 30.0
READ_BYTES = 1 << 18
# SO_TIMESTAMPNS (and its control message, SCM_TIMESTAMPNS): Linux's, not named by `socket`.
SO_TIMESTAMPNS = 35
ANCILLARY_BYTES = socket.CMSG_SPACE(16)

# Seconds between each read's data arriving and this process reading it, every read, once a
# benchmark asks for them (`keep_read_lags`).
read_lags: list[float] | None = None

OnText = Callable[[str, float], None]


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final frame, masked as a client must (RFC 6455, 5.3)."""
    key = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + key + _mask(payload, key)


class ProtocolViolation(ConnectionError):
    pass


class RawWebSocket:
    """One client connection on a non-blocking socket read by the loop's reader callback.
    `on_text(message, arrived_at)` runs for each text message; `on_end()` once if the
    connection ends before `close()` was asked for."""

    def __init__(
        self, sock: socket.socket, key: str, on_text: OnText, on_end: Callable[[], None]
    ) -> None:
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[None] = loop.create_future()
        self.close_code: int | None = None
        self._accept = base64.b64encode(
            hashlib.sha1(key.encode() + GUID, usedforsecurity=False).digest()
        )
        self._on_text = on_text
        self._on_end = on_end
        self._buffer = bytearray()
        self._upgraded = False
        self._closing = False
        self._sock: socket.socket | None = sock
        self._loop = loop
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data, ancillary, _, _ = sock.recvmsg(READ_BYTES, ANCILLARY_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._lost(error)
            return
        if not data:
            self._lost(None)
            return
        read_at = time.time()
        arrived = read_at
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
                seconds, nanos = struct.unpack("qq", raw[:16])
                arrived = seconds + nanos / 1e9
        if read_lags is not None:
            read_lags.append(read_at - arrived)
        self._data_received(data, arrived)

    def _data_received(self, data: bytes, received: float) -> None:
        buffer = self._buffer
        buffer += data
        try:
            if not self._upgraded and not self._read_handshake():
                return
            self._read_frames(received)
        except ProtocolViolation as error:
            if not self.opened.done():
                self.opened.set_exception(error)
            self._abort()

    def _lost(self, exc: Exception | None) -> None:
        self._release()
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before the upgrade: {exc}"))
        if self.close_code is None:
            self.close_code = ABNORMAL
        if not self.ended.done():
            self.ended.set_result(None)
            if not self._closing:
                self._on_end()

    def _release(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            self._loop.remove_reader(sock.fileno())
            sock.close()

    # --- sending ---------------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        self._write(client_frame(TEXT, text.encode()))

    async def close(self) -> None:
        """The closing handshake (1000), or a cut connection when the server does not answer."""
        self._closing = True
        if self._sock is None or self.ended.done():
            return
        self._write(client_frame(CLOSE, struct.pack("!H", 1000)))
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.shield(self.ended)
        except TimeoutError:
            self._abort()

    # --- reading ---------------------------------------------------------------------------

    def _read_handshake(self) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > 16_384:
                raise ProtocolViolation("no end to the upgrade response's headers")
            return False
        head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        del buffer[: end + 4]
        if not head[0].startswith("HTTP/1.1 101"):
            raise ProtocolViolation(f"upgrade refused: {head[0]}")
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept", "").encode() != self._accept:
            raise ProtocolViolation("wrong Sec-WebSocket-Accept")
        self._upgraded = True
        self.opened.set_result(None)
        return True

    def _read_frames(self, received: float) -> None:
        buffer = self._buffer
        size = len(buffer)
        at = 0
        while size - at >= 2:
            first, second = buffer[at], buffer[at + 1]
            if second & 0x80:
                raise ProtocolViolation("a server frame was masked")
            length = second & 0x7F
            start = at + 2
            if length == 126:
                if size - at < 4:
                    break
                length = int.from_bytes(buffer[at + 2 : at + 4], "big")
                start = at + 4
            elif length == 127:
                if size - at < 10:
                    break
                length = int.from_bytes(buffer[at + 2 : at + 10], "big")
                start = at + 10
            if size - start < length:
                break
            payload = bytes(buffer[start : start + length])
            at = start + length
            if not first & 0x80:
                raise ProtocolViolation("fragmented messages are not expected from the facade")
            opcode = first & 0x0F
            if opcode == TEXT:
                self._on_text(payload.decode(), received)
            elif opcode == PING:
                self._write(client_frame(PONG, payload))
            elif opcode == CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
                self.close_code = self.close_code or NO_STATUS
                if not self._closing:
                    self._write(client_frame(CLOSE, payload[:2]))
                self._lost(None)
                break
            elif opcode != PONG:
                raise ProtocolViolation(f"unexpected opcode {opcode:#x}")
        del buffer[:at]

    def _write(self, frame: bytes) -> None:
        """Client frames are a few bytes (auth, subscribe, pong, close): the socket's send buffer
        takes each whole."""
        if self._sock is not None:
            try:
                self._sock.sendall(frame)
            except OSError as error:
                self._lost(error)

    def _abort(self) -> None:
        self._lost(ConnectionAbortedError("aborted"))


def keep_read_lags() -> None:
    """From now on, keep every read's lag (forgetting those kept before)."""
    global read_lags
    read_lags = []


async def connect(
    host: str, port: int, path: str, on_text: OnText, on_end: Callable[[], None]
) -> RawWebSocket:
    """Open a connection and complete the upgrade (raises ConnectionError when refused)."""
    key = base64.b64encode(os.urandom(16)).decode()
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await loop.sock_connect(sock, (host, port))
    except OSError:
        sock.close()
        raise
    protocol = RawWebSocket(sock, key, on_text, on_end)
    protocol._write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            await protocol.opened
    except TimeoutError:
        protocol._abort()
        raise ConnectionError("no answer to the upgrade request") from None
    return protocol
