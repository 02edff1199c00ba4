"""/ws/chat: streamed assistant answers, typing indicators and presence (DESIGN.md).

After authentication (facade/sockets.py) a client sends:

- `stream_chat` (`sessionId?`, `message`, `model?`): the answer streams back as `session`
  (`sessionId`, `title`: only when it started a new session, which the socket then joins),
  `chunk` (`sessionId`, `text`)..., `tool_call` / `tool_result` (`sessionId`, `toolCall`) while
  the assistant reads the user's portfolios, then `done` (`sessionId`, `messageId`, `usage`).
  A failure ends it with `error` (`code`, `message`, `retryAfter?`, `sessionId?`). One answer
  streams at a time per socket.
- `stop`: cancels the answer this socket is streaming (the gRPC call is cancelled, which
  reaches whichever assistant replica runs it; the service keeps what was streamed, marked
  incomplete); answered `stopped` (`sessionId`).
- `join_session` / `leave_session` (`sessionId`): answered `joined` / `left`; the other sockets
  in that session get `user_joined` / `user_left` (`sessionId`, `userId`). Joining checks with
  the assistant service that the session is the user's (404 otherwise).
- `typing_start` / `typing_stop` (`sessionId`, a joined session): the other sockets in the
  session get `typing` (`sessionId`, `userId`, `active`).

Relays cross facade replicas through the cache's pub/sub (Redis when REDIS_URL is set; the
in-process cache reaches this replica only): one channel per session, `chat:<sessionId>`,
subscribed by each replica while it has sockets in that session. Every message names the
socket it came from, so its sender does not get it back. Answers themselves are not relayed:
each goes to the socket that asked for it, straight from its gRPC stream, by the generic bridge
(facade/bridge.py); presence is this module's own: it has no gRPC counterpart.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import grpc
from aiohttp import web
from stockfolio.assistant.v1 import assistant_pb2, assistant_pb2_grpc

from facade.bridge import Bridge, call_metadata, failure, refusal
from facade.envelope import ApiError
from facade.outbox import ClientSocket, SocketError, json_frame
from facade.plans import Plans
from facade.quotas import CHAT_JOINS, Slot, UserCaps
from facade.sockets import Sockets, SocketUser
from services.runtime.cache import Cache

log = logging.getLogger("stockfolio.facade")

PATH = "/ws/chat"
MAX_ID_CHARS = 64
# Seconds a replica waits for its new subscription to a session's channel to be live.
SUBSCRIBE_WAIT = 5.0
PRESENCE = ("join_session", "leave_session", "typing_start", "typing_stop")


def chat_bridge(plans: Plans) -> Bridge:
    service = assistant_pb2.DESCRIPTOR.services_by_name["AssistantService"]
    return Bridge(
        service,
        "ChatStream",
        plans,
        renames={"stream_chat": ""},
        nested={"tool_call": "toolCall", "tool_result": "toolCall"},
        also=("stop", *PRESENCE),
    )


def _session_id(message: dict[str, Any]) -> str:
    value = message.get("sessionId") or ""
    if not isinstance(value, str) or len(value) > MAX_ID_CHARS:
        raise SocketError("VALIDATION_ERROR", "sessionId must be a session id (a string)")
    if not value:
        raise SocketError("VALIDATION_ERROR", "sessionId is required")
    return value


class Member:
    """One socket in the chat rooms of this replica."""

    __slots__ = ("client", "id", "user_id")

    def __init__(self, client: ClientSocket, user_id: str, member_id: str) -> None:
        self.client = client
        self.user_id = user_id
        self.id = member_id


class ChatRooms:
    """Which sockets of this replica are in which session, and the relay between replicas."""

    def __init__(self, cache: Callable[[], Cache]) -> None:
        self._cache = cache
        self._replica = os.urandom(6).hex()
        self._ids = itertools.count(1)
        self._rooms: dict[str, dict[str, Member]] = {}
        self._listeners: dict[str, asyncio.Task[None]] = {}
        self._live: dict[str, asyncio.Event] = {}
        self._relaying: set[asyncio.Task[None]] = set()

    def member(self, client: ClientSocket, user_id: str) -> Member:
        return Member(client, user_id, f"{self._replica}:{next(self._ids)}")

    @staticmethod
    def channel(session_id: str) -> str:
        return f"chat:{session_id}"

    async def join(self, session_id: str, member: Member) -> None:
        room = self._rooms.setdefault(session_id, {})
        room[member.id] = member
        if session_id not in self._listeners:
            live = self._live[session_id] = asyncio.Event()
            task = asyncio.get_running_loop().create_task(self._listen(session_id))
            self._listeners[session_id] = task
            await asyncio.sleep(0)  # the listener subscribes before the first probe
            # A subscription starts asynchronously: announce ourselves until we hear it, so a
            # relay sent right after this join is not missed.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SUBSCRIBE_WAIT):
                    while not live.is_set():
                        await self._cache().publish(
                            self.channel(session_id), json.dumps({"probe": self._replica}).encode()
                        )
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(live.wait(), 0.05)
        elif not self._live[session_id].is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._live[session_id].wait(), SUBSCRIBE_WAIT)

    def leave(self, session_id: str, member: Member) -> None:
        room = self._rooms.get(session_id)
        if room is None:
            return
        room.pop(member.id, None)
        if not room:
            del self._rooms[session_id]
            self._live.pop(session_id, None)
            task = self._listeners.pop(session_id, None)
            if task is not None:
                task.cancel()

    def relay_later(self, session_id: str, origin: Member, message: dict[str, Any]) -> None:
        """`relay` from a path that cannot wait (a socket that is gone); tracked until sent."""
        task = asyncio.get_running_loop().create_task(self.relay(session_id, origin, message))
        self._relaying.add(task)
        task.add_done_callback(self._relaying.discard)

    async def relay(self, session_id: str, origin: Member, message: dict[str, Any]) -> None:
        """`message` to every other socket in the session, on every replica."""
        payload = {"origin": origin.id, "message": message}
        await self._cache().publish(self.channel(session_id), json.dumps(payload).encode())

    async def _listen(self, session_id: str) -> None:
        try:
            async for raw in self._cache().subscribe(self.channel(session_id)):
                try:
                    payload = json.loads(raw)
                except ValueError:
                    continue
                if "probe" in payload:
                    if payload["probe"] == self._replica and session_id in self._live:
                        self._live[session_id].set()
                    continue
                frame = json_frame(payload["message"])
                for member in list(self._rooms.get(session_id, {}).values()):
                    if member.id != payload.get("origin"):
                        member.client.send(frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("chat relay failed", extra={"sessionId": session_id})

    async def close(self) -> None:
        await asyncio.gather(*self._relaying, return_exceptions=True)
        tasks = list(self._listeners.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._listeners.clear()
        self._rooms.clear()


class ChatConversation:
    """One authenticated /ws/chat socket."""

    def __init__(
        self,
        rooms: ChatRooms,
        assistant: Callable[[], grpc.aio.Channel],
        bridge: Bridge,
        client: ClientSocket,
        user: SocketUser,
        *,
        caps: UserCaps,
        joins_per_socket: int,
    ) -> None:
        self._rooms = rooms
        self._caps = caps
        self._joins_per_socket = joins_per_socket
        # A slot of the user's CHAT_JOINS_PER_USER for each session this socket is in.
        self._slots: dict[str, Slot] = {}
        self._assistant = assistant
        self._bridge = bridge
        self._client = client
        self._user = user
        self._member = rooms.member(client, user.user_id)
        self._joined: set[str] = set()
        self._streaming: asyncio.Task[None] | None = None
        self._entering: asyncio.Task[None] | None = None

    def _stub(self) -> assistant_pb2_grpc.AssistantServiceStub:
        return assistant_pb2_grpc.AssistantServiceStub(self._assistant())

    async def receive(self, kind: str, message: dict[str, Any]) -> None:
        if kind == "stop":
            if self._streaming is None:
                raise SocketError("NOT_STREAMING", "no answer is streaming on this socket")
            self._streaming.cancel()
        elif kind == "join_session":
            await self._join(_session_id(message))
        elif kind == "leave_session":
            await self._leave(_session_id(message))
        elif kind in PRESENCE:
            session_id = _session_id(message)
            if session_id not in self._joined:
                raise SocketError("NOT_JOINED", "join_session first")
            typing = {
                "type": "typing",
                "sessionId": session_id,
                "userId": self._user.user_id,
                "active": kind == "typing_start",
            }
            await self._rooms.relay(session_id, self._member, typing)
        elif self._streaming is not None:
            raise SocketError("BUSY", "an answer is already streaming on this socket; stop it")
        else:
            request = self._bridge.request(kind, message)
            self._streaming = asyncio.get_running_loop().create_task(self._stream(request))

    # --- presence ------------------------------------------------------------------------------

    async def _join(self, session_id: str) -> None:
        if session_id not in self._joined:
            await self._check_owner(session_id)
            self._take_join(session_id)
            await self._enter(session_id)
        self._client.send_now(json_frame({"type": "joined", "sessionId": session_id}))

    def _take_join(self, session_id: str) -> None:
        """Count a join against the socket's and the user's caps; refused: TOO_MANY_OPEN."""
        if len(self._joined) >= self._joins_per_socket:
            raise SocketError(
                "TOO_MANY_OPEN", f"a socket joins at most {self._joins_per_socket} sessions"
            )
        try:
            self._slots[session_id] = self._caps.take(CHAT_JOINS, self._user.user_id)
        except ApiError as error:
            raise refusal(error) from None
        self._joined.add(session_id)

    def _drop_join(self, session_id: str) -> dict[str, Any]:
        """Out of a session: its slot back, and what the others in it are told."""
        self._joined.discard(session_id)
        slot = self._slots.pop(session_id, None)
        if slot is not None:
            slot.release()
        self._rooms.leave(session_id, self._member)
        return {"type": "user_left", "sessionId": session_id, "userId": self._user.user_id}

    async def _enter(self, session_id: str) -> None:
        await self._rooms.join(session_id, self._member)
        presence = {"type": "user_joined", "sessionId": session_id, "userId": self._user.user_id}
        await self._rooms.relay(session_id, self._member, presence)

    async def _leave(self, session_id: str) -> None:
        if session_id in self._joined:
            await self._rooms.relay(session_id, self._member, self._drop_join(session_id))
        self._client.send_now(json_frame({"type": "left", "sessionId": session_id}))

    async def _check_owner(self, session_id: str) -> None:
        """The assistant service says whether the session exists and is the user's."""
        try:
            await self._stub().GetSession(
                assistant_pb2.GetSessionRequest(id=session_id),
                metadata=call_metadata(self._user.token),
            )
        except grpc.aio.AioRpcError as error:
            raise failure(error, "assistant") from None

    # --- answers -------------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        self._client.send(json_frame(message))

    async def _stream(self, request: Any) -> None:
        session_id = request.session_id
        call = self._stub().ChatStream(request, metadata=call_metadata(self._user.token))
        try:
            async for response in call:
                which, value, reply = self._bridge.reply(response)
                if which == "session":
                    session_id = value.session_id
                self._send({**reply, "sessionId": session_id})
                if which == "session":
                    # Joined beside the stream (its chunks never wait for the relay), when the
                    # caps leave room for it.
                    with contextlib.suppress(SocketError):
                        self._take_join(session_id)
                        self._entering = asyncio.get_running_loop().create_task(
                            self._enter(session_id)
                        )
        except grpc.aio.AioRpcError as error:
            self._send(failure(error, "assistant").reply(**_naming(session_id)))
        except asyncio.CancelledError:
            call.cancel()
            self._send({"type": "stopped", "sessionId": session_id})
            raise
        finally:
            self._streaming = None
            self._client.flush()

    def renewed(self, user: SocketUser) -> None:
        self._user = user  # answers asked from now on carry the new token

    def end(self) -> None:
        if self._streaming is not None:
            self._streaming.cancel()
        if self._entering is not None:
            self._entering.cancel()
        for session_id in list(self._joined):
            self._rooms.relay_later(session_id, self._member, self._drop_join(session_id))


def _naming(session_id: str) -> dict[str, str]:
    return {"sessionId": session_id} if session_id else {}


async def chat_socket(
    sockets: Sockets,
    rooms: ChatRooms,
    assistant: Callable[[], grpc.aio.Channel],
    bridge: Bridge,
    joins_per_socket: int,
    request: web.Request,
) -> web.StreamResponse:
    """`assistant` is called for the assistant service's channel (bound after start-up)."""
    return await sockets.serve(
        request,
        lambda client, user: ChatConversation(
            rooms,
            assistant,
            bridge,
            client,
            user,
            caps=sockets.caps,
            joins_per_socket=joins_per_socket,
        ),
    )
