"""The receiving side of every WebSocket of the facade, as terminado splits it: the Origin
check (cross-site WebSocket hijacking), authentication (the `token` query parameter or a first
`{"type": "auth"}` message, checked by the users service: signature and session), its expiry and
recheck, rates, JSON messages with a `type` and `ping` -> `pong`. The send path is
facade/outbox.py. A path adds only a Conversation: what its messages do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from aiohttp import WSMsgType, web
from prometheus_client import Gauge
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from facade.bridge import call_metadata, refusal
from facade.config import FacadeConfig
from facade.envelope import ApiError, from_rpc_error
from facade.outbox import (
    CLOSE_GRACE,
    SOCKETS_DROPPED,
    ClientSocket,
    Outbox,
    SocketError,
    cap_kernel_buffer,
    json_frame,
    text_frame,
)
from facade.quotas import CHAT_JOINS, SOCKETS, WATCHES, MessageRate, Slot, TokenBucket, UserCaps
from facade.sessions import LiveSessions
from services.runtime.context import correlation_id

# Named here too, where the sockets' users have always found them.
__all__ = ["ClientSocket", "SocketError", "SocketUser", "Sockets", "json_frame", "text_frame"]

log = logging.getLogger("stockfolio.facade")

# Close codes (4000-4999 are the application's; the others are RFC 6455's).
UNAUTHENTICATED_CLOSE = 4401
GOING_AWAY_CLOSE = 1001
INTERNAL_ERROR_CLOSE = 1011
TRY_AGAIN_LATER_CLOSE = 1013
POLICY_VIOLATION_CLOSE = 1008
TOO_MANY_CLOSE = 4429

MAX_MESSAGE_BYTES = 64 * 1024
VALIDATE_DEADLINE = 5.0
# Frames queued within this many seconds are written together (see Outbox).
FLUSH_WINDOW = 0.01

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
    """What one socket path does with its messages, once the socket is authenticated."""

    async def receive(self, kind: str, message: dict[str, Any]) -> None:
        """Act on a message (not auth or ping); raise SocketError to refuse it."""
        ...

    def renewed(self, user: SocketUser) -> None:
        """The socket sent a fresh token (same user): calls from now on carry it."""
        ...

    def end(self) -> None:
        """The socket is gone: forget it."""
        ...


StartConversation = Callable[[ClientSocket, SocketUser], Conversation]


def _parse(data: Any) -> tuple[str, dict[str, Any]]:
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        raise SocketError("BAD_MESSAGE", "messages must be JSON objects") from None
    if not isinstance(message, dict):
        raise SocketError("BAD_MESSAGE", "messages must be JSON objects")
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        raise SocketError("BAD_MESSAGE", "every message needs a string `type`")
    return kind, message


class Sockets:
    """Accepts the app's WebSockets and owns them: closed together (1001) at shutdown."""

    def __init__(self, config: FacadeConfig, users: Callable[[], grpc.aio.Channel]) -> None:
        self._origins = frozenset(config.frontend_origins)
        self._auth_timeout = config.ws_auth_timeout
        self._heartbeat = config.ws_heartbeat
        self._limit = config.ws_send_queue_bytes
        self._users = users
        self._open: set[ClientSocket] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._outbox = Outbox(FLUSH_WINDOW)
        # Sessions are checked again every `ws_session_recheck` seconds, so a logout closes
        # their sockets (and streamed responses) too.
        self.sessions = LiveSessions(config.ws_session_recheck, self.validate)
        # What each user holds open at this replica, and how fast each socket may talk.
        self.caps = UserCaps(
            {
                SOCKETS: config.ws_sockets_per_user,
                WATCHES: config.watches_per_user,
                CHAT_JOINS: config.chat_joins_per_user,
            }
        )
        self._rate = MessageRate(
            config.ws_message_rate, config.ws_message_burst, config.ws_message_strikes
        )

    @property
    def count(self) -> int:
        return len(self._open)

    @property
    def send_budget(self) -> int:
        """Bytes a socket may have waiting before it is dropped (WS_SEND_QUEUE_BYTES)."""
        return self._limit

    def flush(self) -> None:
        """Write what every socket has waiting, without waiting for the window's end."""
        self._outbox.flush()

    # --- lifetime -----------------------------------------------------------------------------

    def close_later(self, client: ClientSocket, code: int, reason: str) -> None:
        """Close from a path that must not wait (a send); the task is tracked until done."""
        task = asyncio.get_running_loop().create_task(client.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def shutdown(self) -> None:
        """Close every socket (going away), then wait for closes already under way."""
        await self.sessions.close()
        self._outbox.flush()
        self._outbox.close()
        await asyncio.gather(
            *(client.close(GOING_AWAY_CLOSE, "server shutting down") for client in self._open),
            *self._closing,
            return_exceptions=True,
        )

    # --- one socket ---------------------------------------------------------------------------

    async def serve(self, request: web.Request, start: StartConversation) -> web.WebSocketResponse:
        """Upgrade, authenticate, then hand the socket's messages to its conversation."""
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self._origins:
            raise ApiError(403, "ORIGIN_NOT_ALLOWED", f"origin {origin} may not open sockets")
        ws = web.WebSocketResponse(
            heartbeat=self._heartbeat,
            compress=False,  # frames are shared between sockets: no per-socket deflate
            max_msg_size=MAX_MESSAGE_BYTES,
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
        cap_kernel_buffer(transport, self._limit)
        client = ClientSocket(
            ws,
            transport,
            path=request.path,
            limit=self._limit,
            outbox=self._outbox,
            closer=self.close_later,
        )
        self._open.add(client)
        gauge = SOCKETS_OPEN.labels(request.path)
        gauge.inc()
        bucket = TokenBucket(self._rate)
        slot: Slot | None = None
        try:
            accepted = await self._authenticate(client, request.query.get("token"), bucket)
            if accepted is not None:
                user, slot = accepted
                await self._converse(client, user, start, bucket)
        except Exception:
            # A socket is a boundary: its failure is logged and closed here, never answered
            # with an HTTP response on a connection that is no longer HTTP.
            log.exception("websocket failed", extra={"path": request.path})
            await client.close(INTERNAL_ERROR_CLOSE, "internal error")
        finally:
            if slot is not None:
                slot.release()
            self._open.discard(client)
            gauge.dec()
            if not ws.closed:
                await client.close(GOING_AWAY_CLOSE, "")
        return ws

    async def _authenticate(
        self, client: ClientSocket, token: str | None, bucket: TokenBucket
    ) -> tuple[SocketUser, Slot] | None:
        """By the query token, else by a first `auth` message within the auth timeout."""
        if token is not None:
            return await self._accept(client, token)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._auth_timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                received = await client.ws.receive(timeout=remaining)
            except TimeoutError:
                break
            if received.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return None  # closed (or broken) before authenticating
            if not await self._within_rate(client, bucket):
                if client.closed:
                    return None
                continue
            try:
                kind, message = _parse(received.data)
            except SocketError as error:
                client.error(error.code, error.message)
                continue
            if kind != "auth":
                client.error("UNAUTHENTICATED", 'authenticate first: {"type": "auth", "token"}')
                continue
            return await self._accept(client, message.get("token"))
        client.error("UNAUTHENTICATED", f"no authentication within {self._auth_timeout:g} s")
        await client.close(UNAUTHENTICATED_CLOSE, "authentication timed out")
        return None

    async def _accept(self, client: ClientSocket, token: object) -> tuple[SocketUser, Slot] | None:
        """The socket's user and its place among that user's sockets (WS_SOCKETS_PER_USER)."""
        try:
            user = await self.validate(token)
            slot = self.caps.take(SOCKETS, user.user_id)
        except ApiError as error:
            client.error(error.code, error.message)
            if error.status == 401:
                code, reason = UNAUTHENTICATED_CLOSE, "unauthenticated"
            elif error.status == 429:
                code, reason = TOO_MANY_CLOSE, "too many sockets"
            else:
                code, reason = TRY_AGAIN_LATER_CLOSE, "try again later"
            await client.close(code, reason)
            return None
        client.send_now(AUTH_OK)
        return user, slot

    async def _within_rate(self, client: ClientSocket, bucket: TokenBucket) -> bool:
        """Whether a message received may be handled; past the rate it is refused with
        RATE_LIMITED, and a socket that keeps on is closed (1008)."""
        if bucket.take():
            return True
        rate = self._rate
        client.error(
            "RATE_LIMITED",
            f"at most {rate.per_second:g} messages a second (bursts of {rate.burst}); slow down",
        )
        if bucket.abusive:
            SOCKETS_DROPPED.labels("rate").inc()
            await client.close(POLICY_VIOLATION_CLOSE, "too many messages")
        return False

    async def validate(self, token: object) -> SocketUser:
        """Ask the users service whose token this is: it checks the signature and the
        session (a logged-out session is refused), as every service does."""
        if not isinstance(token, str) or not (token.isascii() and token.isprintable() and token):
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
        roles = frozenset(
            users_pb2.Role.Name(role).removeprefix("ROLE_").lower() for role in reply.roles
        )
        return SocketUser(reply.user_id, reply.session_id, expires, str(token), roles)

    # --- sessions ended elsewhere (logout, revocation) --------------------------------------------

    def _watch(self, user: SocketUser, client: ClientSocket) -> None:
        def ended(error: ApiError) -> None:
            client.error(error.code, error.message)
            self.close_later(client, UNAUTHENTICATED_CLOSE, "session ended")

        self.sessions.hold(user.session_id, user.token, client, ended)

    def _unwatch(self, user: SocketUser, client: ClientSocket) -> None:
        self.sessions.release(user.session_id, client)

    async def _converse(
        self, client: ClientSocket, user: SocketUser, start: StartConversation, bucket: TokenBucket
    ) -> None:
        expiry = _Expiry(client, self.close_later)
        expiry.set(user.expires_at)
        conversation = start(client, user)
        self._watch(user, client)
        try:
            async for received in client.ws:
                talking = received.type in (WSMsgType.TEXT, WSMsgType.BINARY)
                if talking and not await self._within_rate(client, bucket):
                    if client.closed:
                        break
                    continue
                if received.type is not WSMsgType.TEXT:
                    if received.type is WSMsgType.BINARY:
                        client.error("BAD_MESSAGE", "messages are JSON text, not binary")
                        continue
                    break  # an error frame: aiohttp has closed the socket
                try:
                    kind, message = _parse(received.data)
                    if kind == "ping":
                        client.send_now(PONG)
                    elif kind == "auth":
                        user = await self._renew(client, user, message.get("token"), expiry)
                        conversation.renewed(user)
                    else:
                        await conversation.receive(kind, message)
                except SocketError as error:
                    client.error(error.code, error.message)
        finally:
            self._unwatch(user, client)
            expiry.cancel()
            conversation.end()

    async def _renew(
        self, client: ClientSocket, user: SocketUser, token: object, expiry: _Expiry
    ) -> SocketUser:
        """A fresh token for the same user extends the socket past the old token's expiry."""
        try:
            renewed = await self.validate(token)
        except ApiError as error:
            raise refusal(error) from None
        if renewed.user_id != user.user_id:
            raise SocketError("PERMISSION_DENIED", "this socket belongs to another user")
        expiry.set(renewed.expires_at)
        self._unwatch(user, client)
        self._watch(renewed, client)
        client.send_now(AUTH_OK)
        return renewed


class _Expiry:
    """Closes a socket (4401) when its token expires, unless renewed before."""

    def __init__(
        self, client: ClientSocket, closer: Callable[[ClientSocket, int, str], None]
    ) -> None:
        self._client = client
        self._closer = closer
        self._handle: asyncio.TimerHandle | None = None

    def set(self, expires_at: float) -> None:
        self.cancel()
        if expires_at <= 0:
            return
        delay = max(0.0, expires_at - time.time())
        self._handle = asyncio.get_running_loop().call_later(delay, self._expire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _expire(self) -> None:
        self._client.error(
            "TOKEN_EXPIRED", "the access token expired; reconnect (renew it with auth in time)"
        )
        self._closer(self._client, UNAUTHENTICATED_CLOSE, "token expired")
