"""One view of a terminal session's output: bounded, batched, dropped with a note when it
falls behind."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from services.runtime.doorbell import Doorbell

# The most output one step of a watcher gives at once (one gRPC message, one socket frame).
WATCH_BATCH = 128 * 1024
DROP_NOTE = b"\r\n[stockfolio: this view fell behind and was dropped; reconnect to resume]\r\n"


class Watcher:
    """One view of a session's output; bounded, dropped with a note when it falls behind.

    Each step of the iteration gives everything queued since the last one, joined (up to
    WATCH_BATCH bytes): a PTY is read a few kilobytes at a time, and a reader that is a little
    behind then sends one message instead of dozens."""

    def __init__(self, release: Callable[[Watcher], None], limit_bytes: int) -> None:
        # Called when this view ends, so that its session stops offering it output.
        self._release = release
        self._limit = limit_bytes
        self._chunks: deque[bytes] = deque()
        self._bell = Doorbell()
        self._queued = 0
        self.dropped = False

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> bytes:
        chunks = self._chunks
        if not await self._bell.wait_for(chunks):
            self._release(self)
            raise StopAsyncIteration
        item = chunks.popleft()
        if chunks and len(item) < WATCH_BATCH:
            parts = [item]
            size = len(item)
            while chunks and size + len(chunks[0]) <= WATCH_BATCH:
                size += len(chunks[0])
                parts.append(chunks.popleft())
            item = b"".join(parts)
        self._queued -= len(item)
        return item

    def close(self) -> None:
        self._release(self)
        self.end()

    def replay(self, chunk: bytes) -> None:
        if chunk:
            self._queued += len(chunk)
            self._chunks.append(chunk)
            self._bell.ring()

    def offer(self, chunk: bytes) -> None:
        if self._bell.ended:
            return
        if self._queued + len(chunk) > self._limit:
            self._drop()
            return
        self._queued += len(chunk)
        self._chunks.append(chunk)
        self._bell.ring()

    def _drop(self) -> None:
        self.dropped = True
        self._chunks.clear()
        self._queued = len(DROP_NOTE)
        self._chunks.append(DROP_NOTE)
        self.end()

    def end(self) -> None:
        self._bell.end()
