"""WebSockets watched from the side: every message a socket receives, with when it came."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class WatchedSocket:
    """A client socket whose messages a task collects, until it closes."""

    socket: aiohttp.ClientWebSocketResponse
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    close_code: int | None = None
    closed_at: float | None = None
    _reader: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.received.append((time.monotonic(), json.loads(message.data)))
        self.close_code = self.socket.close_code
        self.closed_at = time.monotonic()

    async def send(self, message: dict[str, Any]) -> None:
        await self.socket.send_json(message)

    def of_type(self, kind: str, since: float = 0.0) -> list[dict[str, Any]]:
        return [m for at, m in self.received if m.get("type") == kind and at >= since]

    def last_at(self) -> float:
        return self.received[-1][0] if self.received else 0.0

    @property
    def closed(self) -> bool:
        return self._reader is not None and self._reader.done()

    async def close(self) -> None:
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            await self.socket.close()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=10)
