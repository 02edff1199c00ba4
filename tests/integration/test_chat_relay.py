"""Chat presence relays between facade replicas (facade/ws_chat.py's ChatRooms), on both cache
backends: a relay reaches the other sockets in the session, and a session's listener that
loses its subscription (its Redis connection, say) subscribes again instead of going deaf."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, cast

from facade.outbox import ClientSocket
from facade.ws_chat import ChatRooms
from services.runtime.cache import PROBE, Cache


class Inbox:
    """Stands in for a ClientSocket: keeps the frames sent to it, as JSON."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def send(self, frame: bytes) -> None:
        header = 2 if frame[1] < 126 else 4  # text_frame's headers: short messages here
        self.received.put_nowait(json.loads(frame[header:]))


class BreaksOnce:
    """A cache whose first subscription fails once it is live, as one does when its Redis
    connection is lost."""

    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self._subscriptions = 0
        self.again = asyncio.Event()  # set when a second subscription starts

    async def publish(self, channel: str, message: bytes) -> None:
        await self._cache.publish(channel, message)

    async def subscribe(self, channel: str) -> AsyncIterator[bytes]:
        self._subscriptions += 1
        first = self._subscriptions == 1
        if not first:
            self.again.set()
        async for message in self._cache.subscribe(channel):
            yield message
            if first and message.startswith(PROBE):
                raise ConnectionError("connection to the cache lost")


async def test_a_relay_reaches_every_other_socket_in_the_session(cache: Cache) -> None:
    rooms = ChatRooms(lambda: cache)
    ann, bob = Inbox(), Inbox()
    await rooms.join("s1", "ann", cast(ClientSocket, ann))
    await rooms.join("s1", "bob", cast(ClientSocket, bob))
    await rooms.relay("s1", "ann", {"type": "typing", "active": True})
    assert await asyncio.wait_for(bob.received.get(), 5) == {"type": "typing", "active": True}
    assert ann.received.empty()  # its sender does not get it back
    await rooms.close()


async def test_a_session_listener_subscribes_again_after_its_subscription_fails(
    cache: Cache,
) -> None:
    breaking = BreaksOnce(cache)
    rooms = ChatRooms(lambda: cast(Cache, breaking))
    ann, bob = Inbox(), Inbox()
    await rooms.join("s1", "ann", cast(ClientSocket, ann))
    await asyncio.wait_for(breaking.again.wait(), 5)  # the first broke right after it was live
    await rooms.join("s1", "bob", cast(ClientSocket, bob))  # returns once live again
    await rooms.relay("s1", "bob", {"type": "user_joined", "userId": "bob"})
    joined = await asyncio.wait_for(ann.received.get(), 5)
    assert joined == {"type": "user_joined", "userId": "bob"}
    await rooms.close()
