"""gRPC servicer of TerminalService: adapts the PTY manager (manager.py) to the API.

A user sees and controls only their own sessions: another user's session is answered exactly as
an unknown one (404). Admins may list every session and see every user in the stats.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
from stockfolio.terminal.v1 import terminal_pb2, terminal_pb2_grpc

from services.runtime.context import Identity
from services.runtime.errors import DomainError, InvalidArgument, PermissionDenied
from services.runtime.interceptors import require_identity
from services.runtime.pagination import page_of
from services.runtime.timestamps import timestamp
from services.terminal.config import TerminalConfig
from services.terminal.manager import PAGE_SIZE, Session, TerminalManager, Watcher
from services.terminal.projects import ProjectDirectories

STATES = {
    "running": terminal_pb2.TERMINAL_STATE_RUNNING,
    "exited": terminal_pb2.TERMINAL_STATE_EXITED,
    "closed": terminal_pb2.TERMINAL_STATE_EXITED,
}
MAX_SESSION_ID = 128


def terminal_message(session: Session) -> terminal_pb2.Terminal:
    return terminal_pb2.Terminal(
        session_id=session.id,
        pid=session.pid,
        cols=session.cols,
        rows=session.rows,
        shell=session.shell,
        project_id=session.project_id,
        state=STATES.get(session.state, terminal_pb2.TERMINAL_STATE_UNSPECIFIED),
        created_at=timestamp(session.created),
        last_activity=timestamp(session.last_activity),
        user_id=session.owner,
        watchers=session.watchers,
        exit_code=session.exit_code or 0,
        id=session.id,
        dimensions=terminal_pb2.TerminalSize(cols=session.cols, rows=session.rows),
    )


def _remember(session: Session, identity: Identity) -> None:
    """Keeps the owner's freshest token on the session, for the logout recheck."""
    known = session.credential
    if not isinstance(known, Identity) or identity.expires_at >= known.expires_at:
        session.credential = identity


def _own_rss() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def _session_id(value: str) -> str:
    if not value or len(value) > MAX_SESSION_ID:
        raise InvalidArgument.field("sessionId", "is required (at most 128 characters)")
    return value


class TerminalServicer(terminal_pb2_grpc.TerminalServiceServicer):
    def __init__(
        self, manager: TerminalManager, projects: ProjectDirectories, config: TerminalConfig
    ) -> None:
        self._manager = manager
        self._projects = projects
        self._config = config

    def _session(self, identity: Identity, session_id: str) -> Session:
        session = self._manager.get(identity.user_id, _session_id(session_id))
        _remember(session, identity)
        return session

    async def CreateTerminal(
        self, request: terminal_pb2.CreateTerminalRequest, context: grpc.aio.ServicerContext
    ) -> terminal_pb2.CreateTerminalResponse:
        identity = require_identity()
        place = await self._projects.resolve(identity, request.project_id)
        session = await self._manager.create(
            identity.user_id,
            cwd=place.directory,
            cols=request.cols or request.dimensions.cols or 80,
            rows=request.rows or request.dimensions.rows or 24,
            shell=request.shell or None,
            project_id=place.project_id,
            # The workspace service's layout: each user's files under <root>/<user id>.
            within=self._config.root / identity.user_id,
        )
        _remember(session, identity)
        return terminal_pb2.CreateTerminalResponse(terminal=terminal_message(session))

    async def ListTerminals(
        self, request: terminal_pb2.ListTerminalsRequest, context: grpc.aio.ServicerContext
    ) -> terminal_pb2.ListTerminalsResponse:
        identity = require_identity()
        page = page_of(request.page, request.limit)
        if request.all_users and not identity.is_admin:
            raise PermissionDenied("only admins may list every user's terminals")
        owner = None if request.all_users else identity.user_id
        sessions = sorted(self._manager.list(owner), key=lambda s: (s.created, s.id))
        shown = sessions[page.offset : page.offset + page.limit]
        return terminal_pb2.ListTerminalsResponse(
            terminals=[terminal_message(s) for s in shown],
            pagination=page.describe(len(sessions)),
        )

    async def GetTerminalStats(
        self, request: terminal_pb2.GetTerminalStatsRequest, context: grpc.aio.ServicerContext
    ) -> terminal_pb2.GetTerminalStatsResponse:
        identity = require_identity()
        everyone = self._manager.list()
        running = [s for s in everyone if s.state == "running"]
        mine = [s for s in running if s.owner == identity.user_id]
        counted = running if identity.is_admin else mine
        config = self._config
        limits = config.sandbox.session
        return terminal_pb2.GetTerminalStatsResponse(
            active_sessions=len(counted),
            max_sessions=self._manager.max_total,
            max_sessions_per_user=self._manager.max_per_user,
            memory_bytes=await asyncio.to_thread(_own_rss),
            all_users=identity.is_admin,
            users=len({s.owner for s in counted}),
            shell_memory_bytes=await self._manager.memory(counted),
            my_sessions=len(mine),
            # Service-wide counts are an admin's: anyone else learns only of their own.
            total_sessions=len(counted),
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
        session = self._session(require_identity(), request.session_id)
        return terminal_pb2.GetTerminalResponse(terminal=terminal_message(session))

    async def CloseTerminal(
        self, request: terminal_pb2.CloseTerminalRequest, context: grpc.aio.ServicerContext
    ) -> terminal_pb2.CloseTerminalResponse:
        session = self._session(require_identity(), request.session_id)
        await self._manager.close(session.id)
        return terminal_pb2.CloseTerminalResponse()

    async def WriteTerminal(
        self, request: terminal_pb2.WriteTerminalRequest, context: grpc.aio.ServicerContext
    ) -> terminal_pb2.WriteTerminalResponse:
        session = self._session(require_identity(), request.session_id)
        data = request.data.encode()
        session.write(data)
        return terminal_pb2.WriteTerminalResponse(bytes_written=len(data))

    async def ResizeTerminal(
        self, request: terminal_pb2.ResizeTerminalRequest, context: grpc.aio.ServicerContext
    ) -> terminal_pb2.ResizeTerminalResponse:
        session = self._session(require_identity(), request.session_id)
        session.resize(
            request.cols or request.dimensions.cols, request.rows or request.dimensions.rows
        )
        return terminal_pb2.ResizeTerminalResponse(terminal=terminal_message(session))

    async def GetTerminalHistory(
        self, request: terminal_pb2.GetTerminalHistoryRequest, context: grpc.aio.ServicerContext
    ) -> terminal_pb2.GetTerminalHistoryResponse:
        session = self._session(require_identity(), request.session_id)
        if request.output_bytes < 0:
            raise InvalidArgument.field("outputBytes", "must be 0 (all) or more")
        history = session.history(output_bytes=request.output_bytes or None)
        return terminal_pb2.GetTerminalHistoryResponse(
            commands=history.commands,
            recent_output=history.output.decode("utf-8", errors="replace"),
        )

    async def AttachTerminal(
        self,
        request_iterator: AsyncIterator[terminal_pb2.AttachTerminalRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[terminal_pb2.AttachTerminalResponse]:
        identity = require_identity()
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("frame") != "join":
            raise InvalidArgument.field("join", "the first frame must join a session")
        session = self._session(identity, first.join.session_id)
        watcher = session.watch(replay=not first.join.no_replay)
        notices: asyncio.Queue[terminal_pb2.AttachTerminalResponse] = asyncio.Queue(maxsize=64)
        pump = asyncio.create_task(_pump_input(session, request_iterator, notices))
        try:
            yield terminal_pb2.AttachTerminalResponse(joined=terminal_message(session))
            async for reply in _merge(watcher, notices):
                yield reply
            yield terminal_pb2.AttachTerminalResponse(exit=await _exit_of(session, watcher))
        finally:
            watcher.close()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump


async def _exit_of(session: Session, watcher: Watcher) -> terminal_pb2.TerminalExit:
    if watcher.dropped:
        return terminal_pb2.TerminalExit(code=0, reason="dropped")
    if session.state == "exited":
        code = await session.finished()  # the exit status is known once the shell is reaped
        return terminal_pb2.TerminalExit(code=code or 0, reason="exited")
    return terminal_pb2.TerminalExit(code=0, reason="closed")


async def _merge(
    watcher: Watcher, notices: asyncio.Queue[terminal_pb2.AttachTerminalResponse]
) -> AsyncIterator[terminal_pb2.AttachTerminalResponse]:
    """The session's output, with refusals of this attachment's input slipped in between,
    until the output ends. One pending read of each kind at a time: nothing buffers here
    beyond the watcher's own bound."""
    output: asyncio.Task[bytes] | None = None
    notice: asyncio.Task[terminal_pb2.AttachTerminalResponse] | None = None
    try:
        while True:
            if output is None:
                output = asyncio.ensure_future(anext(watcher))
            if notice is None:
                notice = asyncio.ensure_future(notices.get())
            done, _ = await asyncio.wait({output, notice}, return_when=asyncio.FIRST_COMPLETED)
            if notice in done:
                yield notice.result()
                notice = None
            if output in done:
                try:
                    chunk = output.result()
                except StopAsyncIteration:
                    return
                output = None
                yield terminal_pb2.AttachTerminalResponse(data=chunk)
    finally:
        for task in (output, notice):
            if task is not None:
                task.cancel()


async def _pump_input(
    session: Session,
    requests: AsyncIterator[terminal_pb2.AttachTerminalRequest],
    notices: asyncio.Queue[terminal_pb2.AttachTerminalResponse],
) -> None:
    """Keystrokes and resizes into the session; a refused frame is answered, not fatal."""
    async for request in requests:
        kind = request.WhichOneof("frame")
        try:
            if kind == "data":
                session.write(request.data)
            elif kind == "resize":
                session.resize(request.resize.cols, request.resize.rows)
            else:
                raise InvalidArgument("this attachment has joined a session already")
        except DomainError as error:
            notice = terminal_pb2.TerminalNotice(code=error.reason, message=str(error))
            with contextlib.suppress(asyncio.QueueFull):  # a client flooding refusals
                notices.put_nowait(terminal_pb2.AttachTerminalResponse(error=notice))
