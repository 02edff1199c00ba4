"""gRPC servicer of TerminalService: request -> use case (terminals.py) -> response. Thin.

AttachTerminal is the one stream: its frames and replies translated, the attachment itself in
attachments.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
from stockfolio.terminal.v1 import terminal_pb2, terminal_pb2_grpc

from services.runtime.cached_idempotency import CachedIdempotency
from services.runtime.errors import InvalidArgument
from services.runtime.interceptors import require_identity
from services.runtime.pagination import page_of
from services.runtime.timestamps import timestamp
from services.terminal.attachments import Ended, Refused, Told
from services.terminal.config import TerminalConfig
from services.terminal.manager import TerminalManager
from services.terminal.sessions import Session, output_text
from services.terminal.terminals import REPLICA_LOST, Recorded, Terminals

STATES = {
    "running": terminal_pb2.TERMINAL_STATE_RUNNING,
    "exited": terminal_pb2.TERMINAL_STATE_EXITED,
    "closed": terminal_pb2.TERMINAL_STATE_EXITED,
    REPLICA_LOST: terminal_pb2.TERMINAL_STATE_EXITED,
}


def terminal_message(session: Session | Recorded) -> terminal_pb2.Terminal:
    state = session.state
    if state == "exited" and session.exit_code is None:
        # Its output has ended but its process is not reaped yet: "exited" comes with the
        # exit code, never as "exited with 0" a moment before the real code is known.
        state = "running"
    return terminal_pb2.Terminal(
        session_id=session.id,
        pid=session.pid,
        cols=session.cols,
        rows=session.rows,
        shell=session.shell,
        project_id=session.project_id,
        state=STATES.get(state, terminal_pb2.TERMINAL_STATE_UNSPECIFIED),
        created_at=timestamp(session.created),
        last_activity=timestamp(session.last_activity),
        user_id=session.owner,
        watchers=session.watchers,
        exit_code=session.exit_code or 0,
        id=session.id,
        dimensions=terminal_pb2.TerminalSize(cols=session.cols, rows=session.rows),
        exit_reason="" if state == "running" else state,
    )


class TerminalServicer(terminal_pb2_grpc.TerminalServiceServicer):
    def __init__(
        self,
        terminals: Terminals,
        manager: TerminalManager,
        config: TerminalConfig,
        *,
        idempotency: CachedIdempotency,
    ) -> None:
        self._terminals = terminals
        # An `Idempotency-Key` retried (a double click on "New terminal") gets the first shell.
        self._idempotency = idempotency
        self._manager = manager  # read for its limits only
        self._config = config

    async def CreateTerminal(
        self, request: terminal_pb2.CreateTerminalRequest, context: grpc.aio.ServicerContext
    ) -> terminal_pb2.CreateTerminalResponse:
        async def create() -> terminal_pb2.CreateTerminalResponse:
            session = await self._terminals.create(
                require_identity(),
                request.project_id,
                cols=request.cols or request.dimensions.cols or 80,
                rows=request.rows or request.dimensions.rows or 24,
                shell=request.shell or None,
            )
            return terminal_pb2.CreateTerminalResponse(terminal=terminal_message(session))

        return await self._idempotency.run(request, terminal_pb2.CreateTerminalResponse, create)

    async def ListTerminals(
        self, request: terminal_pb2.ListTerminalsRequest, context: grpc.aio.ServicerContext
    ) -> terminal_pb2.ListTerminalsResponse:
        page = page_of(request.page, request.limit)
        shown, total = await self._terminals.listing(
            require_identity(), page, all_users=request.all_users
        )
        return terminal_pb2.ListTerminalsResponse(
            terminals=[terminal_message(s) for s in shown], pagination=page.describe(total)
        )

    async def GetTerminalStats(
        self, request: terminal_pb2.GetTerminalStatsRequest, context: grpc.aio.ServicerContext
    ) -> terminal_pb2.GetTerminalStatsResponse:
        stats = await self._terminals.stats(require_identity())
        config = self._config
        limits = config.sandbox.session
        return terminal_pb2.GetTerminalStatsResponse(
            active_sessions=stats.active_sessions,
            max_sessions=self._manager.max_total,
            max_sessions_per_user=self._manager.max_per_user,
            memory_bytes=stats.memory_bytes,
            all_users=stats.all_users,
            users=stats.users,
            shell_memory_bytes=stats.shell_memory_bytes,
            my_sessions=stats.my_sessions,
            total_sessions=stats.replica_sessions,
            idle_timeout_seconds=round(config.idle_timeout),
            output_bytes_per_second=config.output_rate,
            max_write_bytes=config.max_write_bytes,
            scrollback_bytes=config.scrollback_bytes,
            sandbox=config.sandbox.mode,
            sandbox_limits=self._manager.limits_applied,
            sandbox_max_processes=limits.processes,
            sandbox_memory_bytes=limits.memory_bytes,
            sandbox_file_size_bytes=limits.file_size_bytes,
            sandbox_open_files=limits.open_files,
        )

    async def GetTerminal(
        self, request: terminal_pb2.GetTerminalRequest, context: grpc.aio.ServicerContext
    ) -> terminal_pb2.GetTerminalResponse:
        session = await self._terminals.find(require_identity(), request.session_id)
        return terminal_pb2.GetTerminalResponse(terminal=terminal_message(session))

    async def CloseTerminal(
        self, request: terminal_pb2.CloseTerminalRequest, context: grpc.aio.ServicerContext
    ) -> terminal_pb2.CloseTerminalResponse:
        await self._terminals.close(require_identity(), request.session_id)
        return terminal_pb2.CloseTerminalResponse()

    async def WriteTerminal(
        self, request: terminal_pb2.WriteTerminalRequest, context: grpc.aio.ServicerContext
    ) -> terminal_pb2.WriteTerminalResponse:
        written = await self._terminals.write(
            require_identity(), request.session_id, request.data.encode()
        )
        return terminal_pb2.WriteTerminalResponse(bytes_written=written)

    async def ResizeTerminal(
        self, request: terminal_pb2.ResizeTerminalRequest, context: grpc.aio.ServicerContext
    ) -> terminal_pb2.ResizeTerminalResponse:
        session = await self._terminals.resize(
            require_identity(),
            request.session_id,
            request.cols or request.dimensions.cols,
            request.rows or request.dimensions.rows,
        )
        return terminal_pb2.ResizeTerminalResponse(terminal=terminal_message(session))

    async def GetTerminalHistory(
        self, request: terminal_pb2.GetTerminalHistoryRequest, context: grpc.aio.ServicerContext
    ) -> terminal_pb2.GetTerminalHistoryResponse:
        history = await self._terminals.history(
            require_identity(), request.session_id, request.output_bytes
        )
        return terminal_pb2.GetTerminalHistoryResponse(
            commands=history.commands,
            recent_output=output_text(history.output),
        )

    async def AttachTerminal(
        self,
        request_iterator: AsyncIterator[terminal_pb2.AttachTerminalRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[terminal_pb2.AttachTerminalResponse]:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("frame") != "join":
            raise InvalidArgument.field("join", "the first frame must join a session")
        told = self._terminals.attach(
            require_identity(),
            first.join.session_id,
            replay=not first.join.no_replay,
            frames=request_iterator,
            apply=_apply_frame,
        )
        async with contextlib.aclosing(told):
            async for event in told:
                yield _attach_response(event)


def _apply_frame(session: Session, request: terminal_pb2.AttachTerminalRequest) -> None:
    kind = request.WhichOneof("frame")
    if kind == "data":
        session.write(request.data)
    elif kind == "resize":
        session.resize(request.resize.cols, request.resize.rows)
    else:
        raise InvalidArgument("this attachment has joined a session already")


def _attach_response(event: Told | Recorded) -> terminal_pb2.AttachTerminalResponse:
    if isinstance(event, bytes):
        return terminal_pb2.AttachTerminalResponse(data=event)
    if isinstance(event, Refused):
        notice = terminal_pb2.TerminalNotice(code=event.error.reason, message=str(event.error))
        return terminal_pb2.AttachTerminalResponse(error=notice)
    if isinstance(event, Ended):
        return terminal_pb2.AttachTerminalResponse(
            exit=terminal_pb2.TerminalExit(code=event.code, reason=event.reason)
        )
    return terminal_pb2.AttachTerminalResponse(joined=terminal_message(event))
