"""/ws/terminal (and the seed's /ws/terminal-v2): a browser terminal bridged to AttachTerminal,
on the replica that owns the session (README, "Terminals")."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
from collections.abc import Callable, Iterator
from json.encoder import encode_basestring_ascii
from typing import Any, cast

import grpc
from stockfolio.terminal.v1 import terminal_pb2, terminal_pb2_grpc

from facade.bridge import Bridge, call_metadata, failure
from facade.outbox import ClientSocket, SocketError, json_frame, text_frame
from facade.placement import Placement
from facade.plans import Plans
from facade.sockets import SocketUser
from services.runtime.ownership import Owned

log = logging.getLogger("stockfolio.facade")

# The seed names its path with the trailing slash; both spellings are served.
PATHS = ("/ws/terminal", "/ws/terminal-v2", "/ws/terminal-v2/")
# Bytes of escaped output per `data` message at most (a quarter of a socket's send budget at
# most: see _output).
FRAME_BYTES = 8192


def terminal_bridge(plans: Plans) -> Bridge:
    service = terminal_pb2.DESCRIPTOR.services_by_name["TerminalService"]
    return Bridge.of(
        service, "AttachTerminal", plans, nested={"joined": "terminal"}, also=("disconnect",)
    )


class TerminalConversation:
    """One authenticated terminal socket: one attachment at a time, its output paced and decoded
    (UTF-8 across chunks). A renewed token reaches the next join."""

    def __init__(
        self,
        channel: Callable[[], grpc.aio.Channel],
        bridge: Bridge,
        client: ClientSocket,
        user: SocketUser,
        *,
        backlog: int,
        placement: Callable[[], Placement | None] = lambda: None,
    ) -> None:
        self._stub = terminal_pb2_grpc.TerminalServiceStub(channel())
        self._placement = placement()
        self._bridge = bridge
        self._client = client
        self.user = user
        self._backlog = backlog
        self._call: Any = None
        self._relay: asyncio.Task[None] | None = None

    async def receive(self, kind: str, message: dict[str, Any]) -> None:
        if kind == "disconnect":
            # The seed's event: this socket lets go of its session (the shell keeps running,
            # another socket may join it) and closes normally.
            self.end()
            await self._client.close(1000, "disconnected")
            return
        request = self._bridge.request(kind, message)
        if kind == "join":
            self.end()
            joining = cast(terminal_pb2.AttachTerminalRequest, request).join
            stub, owned = await self._stub_for(joining.session_id)
            self._call = stub.AttachTerminal(metadata=call_metadata(self.user.token))
            self._relay = asyncio.get_running_loop().create_task(
                self._relay_output(self._call, owned)
            )
        if self._call is None:
            raise SocketError("NOT_JOINED", "join a session first")
        try:
            await self._call.write(request)  # a call that has ended: InvalidStateError
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            # The stream ended: the relay reports why (exit or error).
            raise SocketError("NOT_JOINED", "the session has ended; join one") from None

    def end(self) -> None:
        if self._relay is not None:
            self._relay.cancel()
            self._relay = None
        if self._call is not None:
            self._call.cancel()
            self._call = None

    async def _stub_for(
        self, session_id: str
    ) -> tuple[terminal_pb2_grpc.TerminalServiceStub, Owned | None]:
        """A stub on the session owner's channel (and who owns it), or the round-robin one."""
        found = await self._placement.owner(session_id) if self._placement else None
        if found is None:
            return self._stub, None
        owned, channel = found
        return terminal_pb2_grpc.TerminalServiceStub(channel), owned

    async def _relay_output(self, call: Any, owned: Owned | None = None) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            async for response in call:
                which, value, reply = self._bridge.reply(response)
                if which == "data":
                    await self._output(decoder.decode(value))
                    continue
                if which == "exit":
                    await self._output(decoder.decode(b"", final=True))
                    if self._call is call:
                        # Detached before the client hears it: data it sends after the exit
                        # is refused NOT_JOINED, not written to a stream the server is ending.
                        self._call = None
                elif which == "joined":
                    reply["sessionId"] = value.session_id
                self._client.send_now(json_frame(reply))
        except grpc.aio.AioRpcError as error:
            placement = self._placement
            if (
                owned is not None
                and placement is not None
                and await placement.lost_by(error, owned)
            ):
                await self._output(decoder.decode(b"", final=True))
                lost = terminal_pb2.TerminalExit(code=0, reason="replica_lost")
                _, _, reply = self._bridge.reply(terminal_pb2.AttachTerminalResponse(exit=lost))
                self._client.send_now(json_frame(reply))
            elif error.code() != grpc.StatusCode.CANCELLED:
                self._client.refuse(failure(error, "terminal"))
        except Exception:
            log.exception("terminal relay failed")
            self._client.error("INTERNAL", "the terminal stream failed; join again")
        finally:
            with contextlib.suppress(Exception):
                call.cancel()

    async def _output(self, text: str) -> None:
        """In frames of at most FRAME_BYTES of JSON, each written once less than the backlog (half
        the send budget) waits: what waits then stays under three quarters of the budget, and a
        pong, an error or the heartbeat's ping written after it never finds the socket past it
        (4008). Cut by size, not characters: in ASCII JSON a control or non-ASCII character is
        six bytes (twelve past the BMP)."""
        limit = min(FRAME_BYTES, self._backlog // 2)
        for escaped in _escaped_pieces(text, limit):
            await self._client.writable(self._backlog)
            self._client.send_now(text_frame(b'{"type":"data","data":' + escaped + b"}"))


def _escaped_pieces(text: str, limit: int) -> Iterator[bytes]:
    """`text` as JSON strings (quoted, ASCII) of at most `limit` bytes each, cut between
    characters; each piece as long as fits."""
    start = 0
    while start < len(text):
        count = min(len(text) - start, limit)
        while True:
            escaped = encode_basestring_ascii(text[start : start + count]).encode()
            if len(escaped) <= limit or count == 1:
                break
            # Shrink in proportion to the overshoot (characters cost 1 to 12 bytes): a few
            # rounds at most, each one C call over the piece.
            count = max(1, min(count - 1, count * limit // len(escaped)))
        yield escaped
        start += count
