"""/ws/terminal (and the seed's /ws/terminal-v2): a browser terminal bridged to AttachTerminal.

After authentication (facade/sockets.py) a client sends `join` with a `sessionId` (and
`noReplay: true` to skip the recent output); the facade opens one AttachTerminal stream to the
terminal service with the socket's own token and relays:

- client `data` (`data`: keystrokes) and `resize` (`cols`, `rows`) -> the stream;
- the stream's replies -> `joined` (`sessionId`, `terminal`), `data` (`data`: output, decoded
  as UTF-8 across chunk boundaries), `exit` (`code`, `reason`) and `error` (`code`, `message`:
  a refused frame, or a join the service refused - unknown session, another user's session).

A second `join` leaves the first session and joins the other. Output is written at once (no
flush window: keystroke echo is what a terminal is judged by). A socket that cannot keep up
is not dropped here: the relay stops reading the stream while more than half the socket's
send budget waits, gRPC's flow control carries that back to the terminal service, and there
the attachment's own bound ends it with a note when the client stays behind (`exit`,
reason `dropped`).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
from typing import Any

import grpc
from aiohttp import web
from stockfolio.terminal.v1 import terminal_pb2, terminal_pb2_grpc

from facade.codec import Plans, message_json
from facade.envelope import from_rpc_error
from facade.sockets import ClientSocket, SocketError, Sockets, SocketUser, json_frame
from services.runtime.context import CORRELATION_HEADER, correlation_id

log = logging.getLogger("stockfolio.facade")

# The seed names its path with the trailing slash; both spellings are served.
PATHS = ("/ws/terminal", "/ws/terminal-v2", "/ws/terminal-v2/")
MAX_SESSION_ID = 128
MAX_DIMENSION = 10_000
# Output characters per `data` message at most.
FRAME_CHARS = 8192


def _invalid(message: str) -> SocketError:
    return SocketError("VALIDATION_ERROR", message)


def _dimension(message: dict[str, Any], name: str) -> int:
    value = message.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_DIMENSION:
        raise _invalid(f"{name} must be a positive integer")
    return value


class TerminalConversation:
    """One authenticated terminal socket: at most one attachment at a time."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        plans: Plans,
        client: ClientSocket,
        user: SocketUser,
        *,
        backlog: int,
    ) -> None:
        self._backlog = backlog
        self._stub = terminal_pb2_grpc.TerminalServiceStub(channel)
        self._plan = plans.plan(terminal_pb2.Terminal.DESCRIPTOR)
        self._client = client
        self._user = user
        self._call: Any = None
        self._relay: asyncio.Task[None] | None = None

    async def receive(self, kind: str, message: dict[str, Any]) -> None:
        if kind == "join":
            session_id = message.get("sessionId")
            if not isinstance(session_id, str) or not 0 < len(session_id) <= MAX_SESSION_ID:
                raise _invalid("join needs a sessionId")
            await self._join(session_id, no_replay=message.get("noReplay") is True)
        elif kind == "data":
            data = message.get("data")
            if not isinstance(data, str):
                raise _invalid("data must be a string")
            await self._send(terminal_pb2.AttachTerminalRequest(data=data.encode()))
        elif kind == "resize":
            size = terminal_pb2.TerminalSize(
                cols=_dimension(message, "cols"), rows=_dimension(message, "rows")
            )
            await self._send(terminal_pb2.AttachTerminalRequest(resize=size))
        elif kind == "disconnect":
            # The seed's event: this socket lets go of its session (the shell keeps running,
            # another socket may join it) and closes normally.
            self._leave()
            await self._client.close(1000, "disconnected")
        else:
            raise SocketError(
                "UNKNOWN_TYPE",
                f"unknown message type {kind[:40]!r}; this socket takes: "
                "auth, ping, join, data, resize, disconnect",
            )

    def renewed(self, user: SocketUser) -> None:
        # The next join carries the new token; an open attachment was authorized when it
        # started, and ends with the socket if the session is revoked.
        self._user = user

    def end(self) -> None:
        self._leave()

    # --- the attachment ------------------------------------------------------------------------

    async def _join(self, session_id: str, *, no_replay: bool) -> None:
        self._leave()
        metadata = (
            ("authorization", f"Bearer {self._user.token}"),
            (CORRELATION_HEADER, correlation_id.get()),
        )
        call = self._stub.AttachTerminal(metadata=metadata)
        self._call = call
        join = terminal_pb2.TerminalJoin(session_id=session_id, no_replay=no_replay)
        self._relay = asyncio.get_running_loop().create_task(self._relay_output(call))
        await self._send(terminal_pb2.AttachTerminalRequest(join=join))

    async def _send(self, request: terminal_pb2.AttachTerminalRequest) -> None:
        call = self._call
        if call is None:
            raise SocketError("NOT_JOINED", "join a session first")
        if call.done():
            raise SocketError("NOT_JOINED", "the session has ended; join one")
        try:
            await call.write(request)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            # The stream ended meanwhile: the relay reports why (exit or error).
            raise SocketError("NOT_JOINED", "the session has ended; join one") from None

    def _leave(self) -> None:
        if self._relay is not None:
            self._relay.cancel()
            self._relay = None
        if self._call is not None:
            self._call.cancel()
            self._call = None

    async def _relay_output(self, call: Any) -> None:
        client = self._client
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            async for reply in call:
                kind = reply.WhichOneof("frame")
                if kind == "data":
                    text = decoder.decode(reply.data)
                    # In pieces, so no single frame outgrows the socket's budget (escapes can
                    # make JSON six times the text).
                    for start in range(0, len(text), FRAME_CHARS):
                        await client.writable(self._backlog)
                        piece = text[start : start + FRAME_CHARS]
                        client.send_now(json_frame({"type": "data", "data": piece}))
                elif kind == "joined":
                    terminal = message_json(reply.joined, self._plan)
                    client.send_now(
                        json_frame(
                            {
                                "type": "joined",
                                "sessionId": reply.joined.session_id,
                                "terminal": terminal,
                            }
                        )
                    )
                elif kind == "exit":
                    tail = decoder.decode(b"", final=True)
                    if tail:
                        client.send_now(json_frame({"type": "data", "data": tail}))
                    client.send_now(
                        json_frame(
                            {"type": "exit", "code": reply.exit.code, "reason": reply.exit.reason}
                        )
                    )
                elif kind == "error":
                    client.error(reply.error.code, reply.error.message)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                failure = from_rpc_error(error, "terminal")
                client.error(failure.code, failure.message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("terminal relay failed")
            client.error("INTERNAL", "the terminal stream failed; join again")
        finally:
            with contextlib.suppress(Exception):
                call.cancel()


async def terminal_socket(
    sockets: Sockets, channel: Any, plans: Plans, request: web.Request
) -> web.StreamResponse:
    """`channel` is called for the terminal service's channel (bound after start-up)."""
    backlog = sockets.send_budget // 2
    return await sockets.serve(
        request,
        lambda client, user: TerminalConversation(channel(), plans, client, user, backlog=backlog),
    )
