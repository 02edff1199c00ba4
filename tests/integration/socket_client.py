"""What the tests of the facade's WebSockets share: opening one with a token (its auth_ok
read), and reading on to the first message of a type."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from tests.integration.conftest import Client

Socket = aiohttp.ClientWebSocketResponse
WAIT = 10.0


async def authenticated(client: Client, path: str, token: str, within: float = WAIT) -> Socket:
    """A socket on `path` that the facade accepted `token` on."""
    ws: Socket = await client.ws_connect(f"{path}?token={token}")
    assert await ws.receive_json(timeout=within) == {"type": "auth_ok"}
    return ws


async def receive_until(ws: Socket, kind: str, within: float = WAIT) -> list[dict[str, Any]]:
    """Messages up to and including the first of type `kind`."""
    found = []
    deadline = time.monotonic() + within
    while True:
        message: dict[str, Any] = await ws.receive_json(timeout=deadline - time.monotonic())
        found.append(message)
        if message["type"] == kind:
            return found


async def receive(ws: Socket, kind: str, within: float = WAIT) -> dict[str, Any]:
    """The next message of `kind`, skipping others."""
    return (await receive_until(ws, kind, within))[-1]
