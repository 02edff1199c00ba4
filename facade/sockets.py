"""The receiving side of every WebSocket (outbox.py is the send path): Origin, authentication,
its expiry and recheck, caps, rates and the heartbeat; a path adds only a Conversation."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from aiohttp import WSMessage, WSMsgType, web
from prometheus_client import Gauge
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from facade.bridge import call_metadata, refusal
from facade.config import FacadeConfig
from facade.envelope import ApiError, from_rpc_error
from facade.outbox import (
    CLOSE_GRACE,
    PING_FRAME,
    SOCKETS_DROPPED,
    ClientSocket,
    Outbox,
    SocketError,
    json_frame,
    pong_frame,
)
from facade.quotas import CHAT_JOINS, SOCKETS, WATCHES, MessageRate, Slot, TokenBucket, UserCaps
from facade.sessions import Expiries, LiveSessions
from services.runtime.context import correlation_id
from services.runtime.tasks import cancel_and_wait

log = logging.getLogger("stockfolio.facade")

# Close codes (4000-4999 are the application's; the others are RFC 6455's).
UNAUTHENTICATED_CLOSE = 4401
GOING_AWAY_CLOSE = 1001
INTERNAL_ERROR_CLOSE = 1011
POLICY_VIOLATION_CLOSE = 1008
# An authentication refused closes the socket by the refusal's HTTP status (else 1013).
REFUSED_CLOSES = {401: (4401, "unauthenticated"), 429: (4429, "too many sockets")}

MAX_MESSAGE_BYTES = 64 * 1024
# A message may carry a paste (a terminal's input, a chat question): one past MAX_MESSAGE_BYTES
# is still read, up to this bound, to be refused with an error (PAYLOAD_TOO_LARGE) on a socket
# that stays open, rather than closing it (1009, aiohttp's answer past its read limit, and
# still the answer past this).
OVERSIZE_READ_BYTES = 1024 * 1024
# Longer than any token the users service issues; past it, gRPC's metadata limit would answer
# (RESOURCE_EXHAUSTED, read as "too many sockets"), not "invalid token".
MAX_TOKEN_CHARS = 4096
VALIDATE_DEADLINE = 5.0
# Frames queued within this many seconds are written together (see Outbox).
FLUSH_WINDOW = 0.01
# The heartbeat pings a socket slice at a time, one per tenth of the interval (even: a slice is
# checked half an interval after its ping).
BEAT_SLICES = 10

SOCKETS_OPEN = Gauge(
    "stockfolio_ws_connections", "WebSocket connections open now, by path.", ["path"]
)
PONG = json_frame({"type": "pong"})
AUTH_OK = json_frame({"type": "auth_ok"})


@dataclass(frozen=True)
class SocketUser:
    """Whom a socket authenticated as, and until when its token holds (epoch seconds)."""

    user_id: str
    session_id: str
    expires_at: float
    token: str = ""
    roles: frozenset[str] = frozenset()


class Conversation(Protocol):
    """What one socket path does with its messages (not auth or ping) once authenticated;
    SocketError refuses one. `user` is replaced when the socket renews its token."""

    user: SocketUser

    async def receive(self, kind: str, message: dict[str, Any]) -> None: ...

    def end(self) -> None: ...


StartConversation = Callable[[ClientSocket, SocketUser], Conversation]


def _parse(data: Any) -> tuple[str, dict[str, Any]]:
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        raise SocketError("BAD_MESSAGE", "messages must be JSON objects") from None
    if not isinstance(message, dict):
        raise SocketError("BAD_MESSAGE", "messages must be JSON objects")
    if isinstance(data, str) and _SURROGATE_ESCAPE.search(data):
        # JSON may write a lone surrogate (\ud800), which no UTF-8 text or protobuf string
        # can hold: refused here as a frame, not met deeper as an error that ends the socket.
        try:
            json.dumps(message, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise SocketError("BAD_MESSAGE", "messages must be valid Unicode text") from None
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        raise SocketError("BAD_MESSAGE", "every message needs a string `type`")
    return kind, message


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _too_large(data: str | bytes) -> bool:
    """Past MAX_MESSAGE_BYTES (text as UTF-8, encoded only when it may be)."""
    if isinstance(data, bytes) or len(data) * 4 <= MAX_MESSAGE_BYTES:
        return len(data) > MAX_MESSAGE_BYTES
    return len(data.encode()) > MAX_MESSAGE_BYTES


class Sockets:
    """Accepts the app's WebSockets and owns them: closed together (1001) at shutdown."""

    def __init__(self, config: FacadeConfig, users: Callable[[], grpc.aio.Channel]) -> None:
        self._origins = frozenset(config.frontend_origins)
        self.auth_timeout = config.ws_auth_timeout
        self._heartbeat = config.ws_heartbeat
        self.send_budget = config.ws_send_queue_bytes  # bytes a socket may have waiting
        self._users = users
        self._open: set[ClientSocket] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._beat: asyncio.Task[None] | None = None
        # The heartbeat's turns: each socket in one slice, new sockets spread over them.
        self._slices: list[set[ClientSocket]] = [set() for _ in range(BEAT_SLICES)]
        self._sliced = itertools.count()
        self._outbox = Outbox(FLUSH_WINDOW)
        # Sessions are checked again every `ws_session_recheck` seconds, so a logout closes
        # their sockets (and streamed responses) too.
        self.sessions = LiveSessions(config.ws_session_recheck, self.validate)
        # Tokens' expiries, a timer per expiry time shared by the sockets holding that token.
        self.expiries = Expiries()
        # What each user holds open at this replica, and how fast each socket may talk.
        self.caps = UserCaps(
            {
                SOCKETS: config.ws_sockets_per_user,
                WATCHES: config.watches_per_user,
                CHAT_JOINS: config.chat_joins_per_user,
            }
        )
        self.rate = MessageRate(
            config.ws_message_rate, config.ws_message_burst, config.ws_message_strikes
        )

    @property
    def count(self) -> int:
        return len(self._open)

    def flush(self) -> None:
        """Write what every socket has waiting, without waiting for the window's end."""
        self._outbox.flush()

    def close_later(self, client: ClientSocket, code: int, reason: str) -> None:
        """Close from a path that must not wait (a send); the task is tracked until done."""
        task = asyncio.get_running_loop().create_task(client.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def shutdown(self) -> None:
        """Close every socket (going away), then wait for closes already under way."""
        await self.sessions.close()
        await cancel_and_wait(self._beat)
        self.expiries.close()
        self._outbox.flush()
        await asyncio.gather(
            *(client.close(GOING_AWAY_CLOSE, "server shutting down") for client in self._open),
            *self._closing,
            return_exceptions=True,
        )

    async def serve(self, request: web.Request, start: StartConversation) -> web.WebSocketResponse:
        """Upgrade, authenticate, then hand the socket's messages to its conversation."""
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self._origins:
            raise ApiError(403, "ORIGIN_NOT_ALLOWED", f"origin {origin} may not open sockets")
        ws = web.WebSocketResponse(
            # Pings and pongs are this module's (one heartbeat for every socket, _heartbeats),
            # not a timer and a task per socket each beat.
            heartbeat=None,
            autoping=False,
            compress=False,  # frames are shared between sockets: no per-socket deflate
            max_msg_size=OVERSIZE_READ_BYTES,
            timeout=CLOSE_GRACE,
        )
        if not ws.can_prepare(request).ok:
            raise ApiError(
                426,
                "UPGRADE_REQUIRED",
                f"{request.path} is a WebSocket: connect with an Upgrade request",
                headers={"Upgrade": "websocket"},
            )
        ws.headers["X-Correlation-ID"] = correlation_id.get()
        await ws.prepare(request)
        transport = request.transport
        assert transport is not None
        client = ClientSocket(
            ws,
            transport,
            path=request.path,
            limit=self.send_budget,
            outbox=self._outbox,
            closer=self.close_later,
        )
        self._open.add(client)
        beat_slice = self._slices[next(self._sliced) % BEAT_SLICES]
        beat_slice.add(client)
        if self._beat is None:
            self._beat = asyncio.get_running_loop().create_task(self._heartbeats())
        try:
            with SOCKETS_OPEN.labels(request.path).track_inprogress():
                await _Connection(self, client, start).run(request.query.get("token"))
        except Exception:
            # A socket is a boundary: its failure is logged and closed here, never answered
            # with an HTTP response on a connection that is no longer HTTP.
            log.exception("websocket failed", extra={"path": request.path})
            await client.close(INTERNAL_ERROR_CLOSE, "internal error")
        finally:
            self._open.discard(client)
            beat_slice.discard(client)
            if not ws.closed:
                await client.close(GOING_AWAY_CLOSE, "")
        return ws

    async def _heartbeats(self) -> None:
        """Every socket is pinged once every `ws_heartbeat` seconds, and cut when it has sent
        nothing since (pong or message) half that long after: the peer is gone, or too far
        behind to matter; unless a message of its is still being handled (its pong may be
        waiting behind it). The sockets take turns in BEAT_SLICES slices, one slice per tenth
        of the interval: pinged all at once, 10,000 pongs coming back together held up a
        market step."""
        tick = self._heartbeat / BEAT_SLICES
        half = BEAT_SLICES // 2
        for turn in itertools.count():
            await asyncio.sleep(tick)
            try:
                for client in list(self._slices[(turn - half) % BEAT_SLICES]):
                    if client.silent and not client.busy and not client.closed:
                        SOCKETS_DROPPED.labels("heartbeat").inc()
                        client.abort()
                for client in self._slices[turn % BEAT_SLICES]:
                    client.silent = True
                    client.send(PING_FRAME)
                self._outbox.flush()
            except Exception:  # one bad turn must not end every socket's heartbeat
                log.exception("websocket heartbeat failed")

    async def validate(self, token: object) -> SocketUser:
        """Ask the users service whose token this is: it checks the signature and the
        session (a logged-out session is refused), as every service does."""
        if not isinstance(token, str) or not (
            token.isascii() and token.isprintable() and 0 < len(token) <= MAX_TOKEN_CHARS
        ):
            raise ApiError(401, "TOKEN_INVALID", "invalid access token")
        stub = users_pb2_grpc.UsersServiceStub(self._users())
        try:
            reply = await stub.ValidateToken(
                users_pb2.ValidateTokenRequest(),
                metadata=call_metadata(token),
                timeout=VALIDATE_DEADLINE,
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error, "users") from None
        if not reply.valid or not reply.user_id:
            raise ApiError(401, "TOKEN_INVALID", "invalid access token")
        expires = reply.expires_at.ToMicroseconds() / 1e6 if reply.HasField("expires_at") else 0.0
        # Shared between the sockets of a user (and the role sets between all): a socket's own
        # copies were a few hundred bytes each, times every socket open.
        user_id, session_id = sys.intern(reply.user_id), sys.intern(reply.session_id)
        roles = _role_names(tuple(reply.roles))
        return SocketUser(user_id, session_id, expires, str(token), roles)


@functools.lru_cache(maxsize=64)
def _role_names(roles: tuple[users_pb2.Role.ValueType, ...]) -> frozenset[str]:
    return frozenset(users_pb2.Role.Name(role).removeprefix("ROLE_").lower() for role in roles)


class _Connection:
    """One socket's messages, in one loop from the upgrade on: before authentication only
    `auth` is taken (within the auth timeout), after it the conversation's too."""

    def __init__(self, sockets: Sockets, client: ClientSocket, start: StartConversation) -> None:
        self._sockets = sockets
        self._client = client
        self._start = start
        self._bucket = TokenBucket(sockets.rate)
        self._conversation: Conversation | None = None
        self._slot: Slot | None = None
        self._expires_at = 0.0  # when the token's expiry closes the socket (0: never)

    async def run(self, token: str | None) -> None:
        client = self._client
        if token is not None:
            await self._accept(token)
        deadline = asyncio.get_running_loop().time() + self._sockets.auth_timeout
        try:
            while not client.closed:
                # An authenticated socket waits here directly (not in a coroutine of its own):
                # a frame fewer held by every open socket.
                if self._conversation is not None:
                    received: WSMessage | None = await client.ws.receive()
                else:
                    received = await self._unauthenticated_next(deadline)
                if received is None:
                    return  # not authenticated in time
                client.silent = False  # heard from: alive (the heartbeat's pong, or anything)
                if received.type is WSMsgType.PONG:
                    continue
                if received.type is WSMsgType.PING:
                    client.send_now(pong_frame(received.data))
                    continue
                if received.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    return  # closed or broken
                if self._bucket.take():
                    client.busy = True
                    try:
                        await self._handle(received)
                    except SocketError as error:
                        client.refuse(error)
                    finally:
                        client.busy = False
                    continue
                # Past the rate a message is refused; a socket that keeps on is closed (1008).
                rate = self._sockets.rate
                client.error(
                    "RATE_LIMITED",
                    f"at most {rate.per_second:g} messages a second (bursts of {rate.burst}); "
                    "slow down",
                )
                if self._bucket.abusive:
                    SOCKETS_DROPPED.labels("rate").inc()
                    await client.close(POLICY_VIOLATION_CLOSE, "too many messages")
        finally:
            self._end()

    async def _unauthenticated_next(self, deadline: float) -> WSMessage | None:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining > 0:
            try:
                return await self._client.ws.receive(timeout=remaining)
            except TimeoutError:
                pass
        timeout = self._sockets.auth_timeout
        self._client.error("UNAUTHENTICATED", f"no authentication within {timeout:g} s")
        await self._client.close(UNAUTHENTICATED_CLOSE, "authentication timed out")
        return None

    async def _handle(self, received: WSMessage) -> None:
        conversation = self._conversation
        if _too_large(received.data):
            raise SocketError(
                "PAYLOAD_TOO_LARGE",
                f"a message may be at most {MAX_MESSAGE_BYTES} bytes; send a paste in pieces",
            )
        if received.type is WSMsgType.BINARY and conversation is not None:
            raise SocketError("BAD_MESSAGE", "messages are JSON text, not binary")
        kind, message = _parse(received.data)
        if kind == "auth":
            await (self._accept if conversation is None else self._renew)(message.get("token"))
        elif conversation is None:
            raise SocketError("UNAUTHENTICATED", 'authenticate first: {"type": "auth", "token"}')
        elif kind == "ping":
            self._client.send_now(PONG)
        else:
            await conversation.receive(kind, message)

    async def _accept(self, token: object) -> None:
        """The socket's user and its place among that user's sockets (WS_SOCKETS_PER_USER)."""
        try:
            user = await self._sockets.validate(token)
            self._slot = self._sockets.caps.take(SOCKETS, user.user_id)
        except ApiError as error:
            self._client.error(error.code, error.message)
            await self._client.close(*REFUSED_CLOSES.get(error.status, (1013, "try again later")))
            return
        self._client.send_now(AUTH_OK)
        self._hold(user)
        self._conversation = self._start(self._client, user)

    async def _renew(self, token: object) -> None:
        """A fresh token for the same user extends the socket past the old token's expiry."""
        assert self._conversation is not None
        user = self._conversation.user
        try:
            renewed = await self._sockets.validate(token)
        except ApiError as error:
            raise refusal(error) from None
        if renewed.user_id != user.user_id:
            raise SocketError("PERMISSION_DENIED", "this socket belongs to another user")
        self._sockets.sessions.release(user.session_id, self._client)
        self._hold(renewed)
        self._conversation.user = renewed  # calls from now on carry the new token
        self._client.send_now(AUTH_OK)

    def _hold(self, user: SocketUser) -> None:
        """Close the socket (4401) when its token expires, unless renewed before, or when its
        session ends elsewhere (logout, revocation)."""
        expiries = self._sockets.expiries
        expiries.discard(self._expires_at, self)
        self._expires_at = user.expires_at
        if user.expires_at > 0:
            expiries.add(user.expires_at, self, self._token_expired)
        self._sockets.sessions.hold(
            user.session_id, user.token, user.expires_at, self._client, self._session_ended
        )

    def _token_expired(self) -> None:
        self._close(
            "TOKEN_EXPIRED",
            "the access token expired; reconnect (renew it with auth in time)",
            "token expired",
        )

    def _session_ended(self, error: ApiError) -> None:
        self._close(error.code, error.message, "session ended")

    def _close(self, code: str, message: str, reason: str) -> None:
        self._client.error(code, message)
        self._sockets.close_later(self._client, UNAUTHENTICATED_CLOSE, reason)

    def _end(self) -> None:
        if self._slot is not None:
            self._slot.release()
        self._sockets.expiries.discard(self._expires_at, self)
        if self._conversation is not None:
            self._sockets.sessions.release(self._conversation.user.session_id, self._client)
            self._conversation.end()
