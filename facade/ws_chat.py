"""/ws/chat: assistant answers streamed by the bridge to the socket that asked and relayed to the
session's other sockets on every replica; typing and presence (README, "/ws/chat")."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
from stockfolio.assistant.v1 import assistant_pb2, assistant_pb2_grpc

from facade.bridge import Bridge, call_metadata, failure, refusal
from facade.envelope import ApiError
from facade.outbox import ClientSocket, SocketError, json_frame
from facade.plans import Plans
from facade.quotas import CHAT_JOINS, Slot, UserCaps
from facade.sockets import SocketUser
from services.runtime.cache import Cache, subscribe_live
from services.runtime.streams import follow_forever
from services.runtime.tasks import cancel_all

log = logging.getLogger("stockfolio.facade")

PATH = "/ws/chat"
MAX_ID_CHARS = 64
# Seconds a replica waits for its new subscription to a session's channel to be live.
SUBSCRIBE_WAIT = 5.0
PRESENCE = ("join_session", "leave_session", "typing_start", "typing_stop")


def chat_bridge(plans: Plans) -> Bridge:
    service = assistant_pb2.DESCRIPTOR.services_by_name["AssistantService"]
    return Bridge.of(
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


@dataclass
class _Room:
    """A session's sockets at this replica, by member id, and the listener to its channel."""

    listener: asyncio.Task[None]
    live: asyncio.Event
    members: dict[str, ClientSocket] = field(default_factory=dict)


class ChatRooms:
    """Which sockets of this replica are in which session, and the relay between replicas."""

    def __init__(self, cache: Callable[[], Cache]) -> None:
        self._cache = cache
        self._replica = os.urandom(6).hex()
        self._ids = itertools.count(1)
        self._rooms: dict[str, _Room] = {}
        # Relays waiting, by origin, each origin's sent in turn by one task (in _relaying).
        self._queued: dict[str, deque[tuple[str, dict[str, Any]]]] = {}
        self._relaying: set[asyncio.Task[None]] = set()

    def member_id(self) -> str:
        return f"{self._replica}:{next(self._ids)}"

    async def join(self, session_id: str, member: str, client: ClientSocket) -> None:
        """Returns once this replica hears the session's channel, so that a relay sent right
        after the join is not missed."""
        room = self._rooms.get(session_id)
        if room is None:
            live = asyncio.Event()
            listener = asyncio.get_running_loop().create_task(self._listen(session_id, live))
            room = self._rooms[session_id] = _Room(listener, live)
        room.members[member] = client
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(room.live.wait(), SUBSCRIBE_WAIT)

    def leave(self, session_id: str, member: str) -> None:
        room = self._rooms.get(session_id)
        if room is not None:
            room.members.pop(member, None)
            if not room.members:
                del self._rooms[session_id]
                room.listener.cancel()

    def relay_later(self, session_id: str, origin: str, message: dict[str, Any]) -> None:
        """`relay` from a path that must not wait (a socket that is gone, an answer streaming),
        after the relays `origin` asked for before (its answer's chunks stay in order)."""
        queue = self._queued.get(origin)
        if queue is None:
            queue = self._queued[origin] = deque()
            sending = asyncio.get_running_loop().create_task(self._send_queued(origin, queue))
            self._relaying.add(sending)
            sending.add_done_callback(self._relaying.discard)
        queue.append((session_id, message))

    async def _send_queued(self, origin: str, queue: deque[tuple[str, dict[str, Any]]]) -> None:
        """One origin's relays, one at a time, until none is left."""
        try:
            while queue:
                session_id, message = queue.popleft()
                try:
                    await self.relay(session_id, origin, message)
                except Exception:  # the cache is down: the others miss it, the sender does not
                    log.warning(
                        "chat relay not sent", extra={"sessionId": session_id}, exc_info=True
                    )
        finally:
            del self._queued[origin]

    async def relay(self, session_id: str, origin: str, message: dict[str, Any]) -> None:
        """`message` to every other socket in the session, on every replica."""
        payload = json.dumps({"origin": origin, "message": message}).encode()
        await self._cache().publish(f"chat:{session_id}", payload)

    async def _listen(self, session_id: str, live: asyncio.Event) -> None:
        """Relay the session's channel to its sockets here; resubscribed after a failure (a
        lost Redis connection)."""
        channel = f"chat:{session_id}"
        await follow_forever(
            lambda live: subscribe_live(self._cache(), channel, live, SUBSCRIBE_WAIT),
            functools.partial(self._deliver, session_id),
            name="chat relay",
            live=live,
            log_extra={"sessionId": session_id},
        )

    def _deliver(self, session_id: str, raw: bytes) -> None:
        try:
            payload = json.loads(raw)
            frame = json_frame(payload["message"])
        except (ValueError, TypeError, KeyError):
            return
        room = self._rooms.get(session_id)
        for member, client in list(room.members.items()) if room else ():
            if member != payload.get("origin"):
                client.send(frame)

    async def close(self) -> None:
        await asyncio.gather(*self._relaying, return_exceptions=True)
        rooms, self._rooms = list(self._rooms.values()), {}
        # Listeners retry on errors: each cancelled until it ends (cancel_all).
        await cancel_all(room.listener for room in rooms)


class ChatConversation:
    """One authenticated /ws/chat socket: one answer streaming at a time, and the sessions it
    joined, each holding a slot of the user's CHAT_JOINS_PER_USER."""

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
        self._stub = assistant_pb2_grpc.AssistantServiceStub(assistant())
        self._bridge = bridge
        self._client = client
        self.user = user
        self._caps = caps
        self._joins_per_socket = joins_per_socket
        self._member = rooms.member_id()
        self._joined: dict[str, Slot] = {}
        self._streaming: asyncio.Task[None] | None = None
        self._started = False  # the answer streaming has begun to run
        self._entering: asyncio.Task[None] | None = None

    async def receive(self, kind: str, message: dict[str, Any]) -> None:
        if kind == "stop":
            streaming = self._streaming
            # Ended, or stopping already (a second stop of a double click): nothing to stop.
            if streaming is None or streaming.done() or streaming.cancelling():
                raise SocketError("NOT_STREAMING", "no answer is streaming on this socket")
            streaming.cancel()
        elif kind in PRESENCE:
            await self._presence(kind, _session_id(message))
        elif self._streaming is not None:
            raise SocketError("BUSY", "an answer is already streaming on this socket; stop it")
        else:
            request = cast(assistant_pb2.ChatStreamRequest, self._bridge.request(kind, message))
            self._started = False
            task = asyncio.get_running_loop().create_task(self._stream(request))
            task.add_done_callback(functools.partial(self._stream_ended, request.session_id))
            self._streaming = task

    def _stream_ended(self, session_id: str, task: asyncio.Task[None]) -> None:
        """The socket is free again however the answer ended: a `stop` read in the same breath
        as its `stream_chat` cancels the answer before it ever ran (its own `finally` never
        runs then), and says so here."""
        if self._streaming is task:
            self._streaming = None
        if task.cancelled() and not self._started:
            self._client.send(json_frame({"type": "stopped", "sessionId": session_id}))
            self._client.flush()

    def end(self) -> None:
        if self._streaming is not None:
            self._streaming.cancel()
        if self._entering is not None:
            self._entering.cancel()
        for session_id in list(self._joined):
            self._rooms.relay_later(session_id, self._member, self._drop_join(session_id))

    # --- presence ------------------------------------------------------------------------------

    async def _presence(self, kind: str, session_id: str) -> None:
        if kind == "join_session":
            if session_id not in self._joined:
                try:  # the assistant service says whether the session is the user's
                    await self._stub.GetSession(
                        assistant_pb2.GetSessionRequest(id=session_id),
                        metadata=call_metadata(self.user.token),
                    )
                except grpc.aio.AioRpcError as error:
                    raise failure(error, "assistant") from None
                self._take_join(session_id)
                await self._enter(session_id)
            self._client.send_now(json_frame({"type": "joined", "sessionId": session_id}))
        elif kind == "leave_session":
            if session_id in self._joined:
                await self._rooms.relay(session_id, self._member, self._drop_join(session_id))
            self._client.send_now(json_frame({"type": "left", "sessionId": session_id}))
        elif session_id not in self._joined:
            raise SocketError("NOT_JOINED", "join_session first")
        else:
            typing = self._news("typing", session_id, active=kind == "typing_start")
            await self._rooms.relay(session_id, self._member, typing)

    def _news(self, kind: str, session_id: str, **more: Any) -> dict[str, Any]:
        return {"type": kind, "sessionId": session_id, "userId": self.user.user_id, **more}

    def _take_join(self, session_id: str) -> None:
        """Count a join against the socket's and the user's caps; refused: TOO_MANY_OPEN."""
        if len(self._joined) >= self._joins_per_socket:
            raise SocketError(
                "TOO_MANY_OPEN", f"a socket joins at most {self._joins_per_socket} sessions"
            )
        try:
            self._joined[session_id] = self._caps.take(CHAT_JOINS, self.user.user_id)
        except ApiError as error:
            raise refusal(error) from None

    def _drop_join(self, session_id: str) -> dict[str, Any]:
        """Out of a session: its slot back, and what the others in it are told."""
        self._joined.pop(session_id).release()
        self._rooms.leave(session_id, self._member)
        return self._news("user_left", session_id)

    async def _enter(self, session_id: str) -> None:
        await self._rooms.join(session_id, self._member, self._client)
        await self._rooms.relay(session_id, self._member, self._news("user_joined", session_id))

    # --- answers -------------------------------------------------------------------------------

    def _echo(self, session_id: str, message: dict[str, Any]) -> None:
        """An answer's message to the other sockets in its session (another tab or device
        watching it), on every replica; the stream never waits for it."""
        if session_id:
            self._rooms.relay_later(session_id, self._member, message)

    async def _stream(self, request: Any) -> None:
        self._started = True
        session_id = request.session_id
        # Relayed to the session's other sockets only once the service took the call as this
        # user's (a first answer), or for a session this socket joined (ownership checked): a
        # refusal of someone else's session id must not reach that session's sockets.
        accepted = False
        ended: dict[str, Any] | None = None  # the answer's last message, when it did not end well
        call = self._stub.ChatStream(request, metadata=call_metadata(self.user.token))
        try:
            async for response in call:
                accepted = True
                which, value, reply = self._bridge.reply(response)
                if which == "session":
                    session_id = value.session_id
                message = {**reply, "sessionId": session_id}
                self._client.send(json_frame(message))
                if which != "session":  # a new session has no one else in it yet
                    self._echo(session_id, message)
                else:
                    # Joined beside the stream (its chunks never wait for the relay), when the
                    # caps leave room for it.
                    with contextlib.suppress(SocketError):
                        self._take_join(session_id)
                        self._entering = asyncio.get_running_loop().create_task(
                            self._enter(session_id)
                        )
        except grpc.aio.AioRpcError as error:
            ended = failure(error, "assistant").reply(**_named(session_id))
        except asyncio.CancelledError:
            call.cancel()
            ended = {"type": "stopped", "sessionId": session_id}
            raise
        except Exception:
            # A reply this bridge cannot write (a number JSON has no word for): the answer is
            # ended and the socket told, never left waiting for a `done` that cannot come.
            log.exception("chat stream failed", extra={"sessionId": session_id})
            call.cancel()
            failed = SocketError("INTERNAL", "the answer's stream failed")
            ended = failed.reply(**_named(session_id))
        finally:
            if ended is not None:
                self._client.send(json_frame(ended))
                if accepted or session_id in self._joined:
                    self._echo(session_id, ended)
            self._client.flush()


def _named(session_id: str) -> dict[str, str]:
    return {"sessionId": session_id} if session_id else {}
