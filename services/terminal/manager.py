"""Owns the pseudo-terminals: starts shells, streams their output, enforces limits, reaps them.

Knows nothing about gRPC; the servicer adapts. Nothing here blocks the event loop: the PTY is
read with `loop.add_reader`, written without blocking, and children are reaped off the loop.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import ctypes
import errno
import fcntl
import os
import re
import secrets
import signal
import struct
import subprocess
import sys
import termios
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from services.runtime.cgroups import Box
from services.runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from services.runtime.sandbox import INSIDE_HOME, Bind, Sandbox, inside_path, warn_unsandboxed

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
MAX_COLS = 1000
MAX_ROWS = 500
READ_CHUNK = 64 * 1024
# The most output one step of a watcher gives at once (one gRPC message, one socket frame).
WATCH_BATCH = 128 * 1024
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
DROP_NOTE = b"\r\n[stockfolio: this view fell behind and was dropped; reconnect to resume]\r\n"
# The wrapper reopens the slave by name after setsid, which makes it the controlling terminal
# (job control, ^C, SIGWINCH on resize); subprocess cannot do that itself.
_CTTY_WRAPPER = 'exec "$0" -i 0<>"$1" 1>&0 2>&0'
# Inside a sandbox the PTY's name means nothing (the sandbox has its own /dev/pts): setsid -c
# makes the inherited descriptor the controlling terminal instead; -w keeps it as the sandbox's
# main process until the shell exits.
_SANDBOX_CTTY = ("/usr/bin/setsid", "--ctty", "--wait")
_ESCAPE_SEQUENCE = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[^\[]")
_PR_SET_CHILD_SUBREAPER = 36


class WriteTooLarge(InvalidArgument):
    """Input larger than one write may carry (the facade answers 413)."""

    reason = "PAYLOAD_TOO_LARGE"


@dataclass(frozen=True)
class History:
    commands: list[str]
    output: bytes


@dataclass(frozen=True)
class _Process:
    pid: int
    ppid: int
    state: str


class Watcher:
    """One view of a session's output; bounded, dropped with a note when it falls behind.

    Each step of the iteration gives everything queued since the last one, joined (up to
    WATCH_BATCH bytes): a PTY is read a few kilobytes at a time, and a reader that is a little
    behind then sends one message instead of dozens."""

    def __init__(self, session: Session, limit_bytes: int) -> None:
        self._session = session
        self._limit = limit_bytes
        self._chunks: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self._queued = 0
        self._ended = False
        self.dropped = False

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> bytes:
        chunks = self._chunks
        while not chunks:
            if self._ended:
                self._session._unwatch(self)
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        item = chunks.popleft()
        if chunks and len(item) < WATCH_BATCH:
            parts = [item]
            size = len(item)
            while chunks and size + len(chunks[0]) <= WATCH_BATCH:
                size += len(chunks[0])
                parts.append(chunks.popleft())
            item = b"".join(parts)
        self._queued -= len(item)
        return item

    def close(self) -> None:
        self._session._unwatch(self)
        self._end()

    def _replay(self, chunk: bytes) -> None:
        if chunk:
            self._queued += len(chunk)
            self._chunks.append(chunk)
            self._ready.set()

    def _offer(self, chunk: bytes) -> None:
        if self._ended:
            return
        if self._queued + len(chunk) > self._limit:
            self._drop()
            return
        self._queued += len(chunk)
        self._chunks.append(chunk)
        self._ready.set()

    def _drop(self) -> None:
        self.dropped = True
        self._chunks.clear()
        self._queued = len(DROP_NOTE)
        self._chunks.append(DROP_NOTE)
        self._end()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._ready.set()


@dataclass(eq=False)
class Session:
    """A shell in a pseudo-terminal, owned by one user."""

    id: str
    owner: str
    shell: str
    cwd: Path
    cols: int
    rows: int
    process: subprocess.Popen[bytes]
    master_fd: int
    scrollback_bytes: int
    max_write_bytes: int
    watcher_buffer_bytes: int
    project_id: str = ""
    # Output bytes per second before reading the PTY pauses (0: unlimited): the shell then
    # blocks on its writes, so a flood slows itself down instead of the service.
    output_rate: int = 0
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_activity: datetime = field(default_factory=lambda: datetime.now(UTC))
    state: str = "running"
    _idle_since: float = field(default_factory=time.monotonic)
    _scrollback: bytearray = field(default_factory=bytearray)
    _pending: bytearray = field(default_factory=bytearray)
    _line: list[str] = field(default_factory=list)
    _commands: deque[str] = field(default_factory=lambda: deque(maxlen=200))
    _watchers: set[Watcher] = field(default_factory=set)
    _fd_open: bool = True
    _ending: asyncio.Task[None] | None = None
    _on_ready: Callable[[], None] | None = None
    _allowance: float = 0.0
    _allowance_at: float = field(default_factory=time.monotonic)
    _paused: asyncio.TimerHandle | None = None
    output_burst: int = 0
    paused_count: int = 0  # times the output rate limit paused this session
    # The sandbox's cgroup (None without cgroups or without a sandbox); `sandboxed` tells
    # whether the shell runs in one at all.
    box: Box | None = None
    sandboxed: bool = False
    # What the owner last proved themselves with (their token): the manager does not read it,
    # the service's recheck does, to end sessions whose owner has logged out everywhere.
    credential: object | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def exit_code(self) -> int | None:
        return self.process.returncode

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    async def finished(self) -> int | None:
        """Once the session is ending: waits until its processes are reaped, then gives the
        shell's exit code (None while it still runs)."""
        if self._ending is not None:
            await asyncio.shield(self._ending)
        return self.exit_code

    def watch(self, *, replay: bool = True) -> Watcher:
        """An async iterator of output chunks, starting with the scrollback when `replay`."""
        watcher = Watcher(self, self.watcher_buffer_bytes)
        if replay:
            watcher._replay(bytes(self._scrollback))
        if self.state == "running":
            self._watchers.add(watcher)
        else:
            watcher._end()
        return watcher

    def write(self, data: bytes) -> None:
        if len(data) > self.max_write_bytes:
            raise WriteTooLarge(
                f"data: at most {self.max_write_bytes} bytes per write",
                fields=[("data", f"at most {self.max_write_bytes} bytes")],
            )
        if self.state != "running":
            raise FailedPrecondition(f"session {self.id} has {self.state}")
        if len(self._pending) + len(data) > 4 * self.max_write_bytes:
            raise ResourceExhausted("the shell is not reading its input", retry_after=1.0)
        self._touch()
        self._record_input(data)
        if self._pending:
            self._pending += data
            return
        written = self._write_some(data)
        if written < len(data):
            self._pending += data[written:]
            asyncio.get_running_loop().add_writer(self.master_fd, self._flush)

    def resize(self, cols: int, rows: int) -> None:
        validate_dimensions(cols, rows)
        if self.state != "running":
            raise FailedPrecondition(f"session {self.id} has {self.state}")
        fcntl.ioctl(self.master_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.cols, self.rows = cols, rows
        self._touch()

    def history(self, *, output_bytes: int | None = None) -> History:
        output = bytes(self._scrollback)
        if output_bytes is not None:
            output = output[-output_bytes:] if output_bytes > 0 else b""
        return History(commands=list(self._commands), output=output)

    def idle_for(self) -> float:
        return time.monotonic() - self._idle_since

    def _touch(self) -> None:
        self._idle_since = time.monotonic()
        self.last_activity = datetime.now(UTC)

    def _write_some(self, data: bytes) -> int:
        try:
            return os.write(self.master_fd, data)
        except BlockingIOError:
            return 0
        except OSError as error:
            if error.errno == errno.EIO:
                return len(data)  # the shell is gone; the reader ends the session
            raise

    def _flush(self) -> None:
        written = self._write_some(bytes(self._pending))
        del self._pending[:written]
        if not self._pending:
            asyncio.get_running_loop().remove_writer(self.master_fd)

    def _record_input(self, data: bytes) -> None:
        text = _ESCAPE_SEQUENCE.sub(b"", data).decode("utf-8", errors="replace")
        for char in text:
            if char in "\r\n":
                command = "".join(self._line).strip()
                if command:
                    self._commands.append(command)
                self._line.clear()
            elif char in "\x7f\x08":
                if self._line:
                    self._line.pop()
            elif char in "\x03\x15":  # ^C and ^U discard the line
                self._line.clear()
            elif char >= " ":
                self._line.append(char)

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self.master_fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._end_output("exited")
            return
        self._scrollback += chunk
        excess = len(self._scrollback) - self.scrollback_bytes
        if excess > 0:
            del self._scrollback[:excess]
        self._touch()
        for watcher in list(self._watchers):
            watcher._offer(chunk)
            if watcher.dropped:
                self._watchers.discard(watcher)
        if self.output_rate:
            self._spend(len(chunk))

    def _spend(self, size: int) -> None:
        """A token bucket: beyond its burst, stop reading until it refills at the rate. The
        burst is a quarter of a watcher's bound, so a burst alone never drops a view that
        keeps up with the rate."""
        now = time.monotonic()
        rate = self.output_rate
        burst = self.output_burst
        self._allowance = min(burst, self._allowance + (now - self._allowance_at) * rate) - size
        self._allowance_at = now
        if self._allowance < 0 and self._fd_open and self._paused is None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self.master_fd)
            self.paused_count += 1
            self._paused = loop.call_later(-self._allowance / rate, self._resume)

    def _resume(self) -> None:
        self._paused = None
        if self._fd_open and self._on_ready is not None:
            asyncio.get_running_loop().add_reader(self.master_fd, self._on_ready)

    def _end_output(self, state: str) -> None:
        """Stops reading and writing the PTY and ends every watcher; idempotent."""
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        if self._fd_open:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self.master_fd)
            loop.remove_writer(self.master_fd)
            os.close(self.master_fd)
            self._fd_open = False
        if self.state == "running":
            self.state = state
        for watcher in list(self._watchers):
            watcher._end()
        self._watchers.clear()

    def _unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)


def validate_dimensions(cols: int, rows: int) -> None:
    violations = []
    if not 1 <= cols <= MAX_COLS:
        violations.append(("cols", f"must be between 1 and {MAX_COLS}"))
    if not 1 <= rows <= MAX_ROWS:
        violations.append(("rows", f"must be between 1 and {MAX_ROWS}"))
    if violations:
        message = "; ".join(f"{name}: {text}" for name, text in violations)
        raise InvalidArgument(message, fields=violations)


class TerminalManager:
    """All sessions of one service: creation under limits, lookup by owner, culling, shutdown."""

    def __init__(
        self,
        root: Path,
        *,
        max_per_user: int = 10,
        max_total: int = 500,
        scrollback_bytes: int = 256 * 1024,
        idle_timeout: float = 3600.0,
        shells: Sequence[str] = ("/bin/bash", "/bin/sh"),
        grace: float = 2.0,
        max_write_bytes: int = 64 * 1024,
        watcher_buffer_bytes: int = 1024 * 1024,
        output_rate: int = 0,
        cull_interval: float = 30.0,
        term: str = "xterm-256color",
        lang: str = "C.UTF-8",
        user: str = "stockfolio",
        sandbox: Sandbox | None = None,
        still_allowed: Callable[[Session], Awaitable[bool]] | None = None,
        recheck_interval: float = 30.0,
    ) -> None:
        self.root = Path(os.path.realpath(root))
        self.max_per_user = max_per_user
        self.max_total = max_total
        self.scrollback_bytes = scrollback_bytes
        self.idle_timeout = idle_timeout
        self.shells = tuple(shells)
        self.grace = grace
        self.max_write_bytes = max_write_bytes
        self.watcher_buffer_bytes = watcher_buffer_bytes
        self.output_rate = output_rate
        self._burst = min(output_rate, max(READ_CHUNK, watcher_buffer_bytes // 4))
        self.cull_interval = cull_interval
        self.term, self.lang, self.user = term, lang, user
        self.sandbox = sandbox
        self.still_allowed = still_allowed
        self.recheck_interval = recheck_interval
        self._sessions: dict[str, Session] = {}
        self._starting: dict[str, int] = {}
        self._culler: asyncio.Task[None] | None = None
        self._rechecker: asyncio.Task[None] | None = None
        # Orphaned background jobs are reparented to us so they can be reaped, not left as
        # zombies under an init that does not reap.
        self.reaps_orphans = _become_subreaper()

    async def __aenter__(self) -> TerminalManager:
        self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.shutdown()

    @property
    def sandboxed(self) -> bool:
        return self.sandbox is not None and self.sandbox.enabled

    @property
    def limits_applied(self) -> str:
        return self.sandbox.limits_applied if self.sandbox is not None else "none"

    def start(self) -> None:
        if not self.sandboxed:
            warn_unsandboxed("every terminal session")
        loop = asyncio.get_running_loop()
        if self._culler is None and self.idle_timeout > 0:
            self._culler = loop.create_task(self._cull_forever())
        if self._rechecker is None and self.still_allowed is not None:
            self._rechecker = loop.create_task(self._recheck_forever())

    async def create(
        self,
        owner: str,
        cwd: Path | str | None = None,
        cols: int = 80,
        rows: int = 24,
        shell: str | None = None,
        project_id: str = "",
        within: Path | None = None,
    ) -> Session:
        """A new session for `owner` in `cwd` (relative to the root, or absolute inside it; and
        inside `within` too when given: the owner's own part of the root)."""
        shell = shell or self.shells[0]
        if shell not in self.shells:
            raise InvalidArgument.field("shell", f"must be one of {', '.join(self.shells)}")
        validate_dimensions(cols, rows)
        # Resolving touches the filesystem (a shared volume, perhaps): off the event loop.
        directory = await asyncio.to_thread(self._resolve_cwd, cwd, within)
        home = await asyncio.to_thread(_real, within) if within is not None else directory
        self._check_capacity(owner)
        session_id = f"session_{int(time.time() * 1000)}_{secrets.token_hex(6)}"
        self._starting[owner] = self._starting.get(owner, 0) + 1
        box = None
        try:
            if self.sandbox is not None:
                box = self.sandbox.open_box(owner, session_id)
            else:
                warn_unsandboxed(f"terminal session {session_id}")
            process, master_fd = await asyncio.to_thread(
                self._spawn, shell, directory, cols, rows, home, box
            )
        except BaseException:
            if box is not None:
                box.remove()
            raise
        finally:
            self._starting[owner] -= 1
            if not self._starting[owner]:
                del self._starting[owner]
        session = Session(
            id=session_id,
            owner=owner,
            shell=shell,
            cwd=directory,
            cols=cols,
            rows=rows,
            process=process,
            master_fd=master_fd,
            scrollback_bytes=self.scrollback_bytes,
            max_write_bytes=self.max_write_bytes,
            watcher_buffer_bytes=self.watcher_buffer_bytes,
            project_id=project_id,
            output_rate=self.output_rate,
            output_burst=self._burst,
            _allowance=float(self._burst),
            box=box,
            sandboxed=self.sandboxed,
        )
        self._sessions[session.id] = session
        session._on_ready = self._reader(session)
        asyncio.get_running_loop().add_reader(master_fd, session._on_ready)
        return session

    def get(self, owner: str, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None or session.owner != owner:
            raise NotFound(f"no terminal session {session_id}")
        return session

    def list(self, owner: str | None = None) -> list[Session]:
        """The owner's sessions, or every session when `owner` is None (admin)."""
        return [s for s in self._sessions.values() if owner is None or s.owner == owner]

    async def close(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is None:
            raise NotFound(f"no terminal session {session_id}")
        await self._terminate(session)
        self._sessions.pop(session_id, None)

    async def shutdown(self) -> None:
        for task in (self._culler, self._rechecker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._culler = self._rechecker = None
        await asyncio.gather(*(self.close(sid) for sid in list(self._sessions)))

    async def memory(self, sessions: Sequence[Session]) -> int:
        """Resident bytes of every process in these sessions (shells and what they started)."""

        def measure() -> int:
            running = [s for s in sessions if s.state == "running"]
            plain = {s.pid for s in running if not s.sandboxed}
            members = _processes_by_session(plain)
            pids = {m.pid for group in members.values() for m in group}
            boxed = [s for s in running if s.sandboxed]
            # A sandbox's processes are its cgroup's, or (rlimits only) bubblewrap's descendants.
            for session in boxed:
                if session.box is not None:
                    pids |= session.box.members()
            pids |= _descendants({s.pid for s in boxed if s.box is None})
            return sum(_private_bytes(pid) for pid in pids)

        return await asyncio.to_thread(measure)

    async def cull_idle(self) -> builtins.list[str]:
        """Closes sessions idle longer than `idle_timeout`; returns their ids."""
        idle = [s.id for s in self._sessions.values() if s.idle_for() > self.idle_timeout]
        await asyncio.gather(*(self.close(sid) for sid in idle))
        return idle

    def _reader(self, session: Session) -> Callable[[], None]:
        def on_readable() -> None:
            session._on_readable()
            if session.state != "running":
                self._terminate_soon(session)

        return on_readable

    def _terminate_soon(self, session: Session) -> None:
        if session._ending is None:
            session._ending = asyncio.get_running_loop().create_task(self._end_session(session))

    async def _terminate(self, session: Session) -> None:
        self._terminate_soon(session)
        assert session._ending is not None
        await asyncio.shield(session._ending)

    async def close_owner(self, owner: str) -> builtins.list[str]:
        """Closes every session of `owner` (their sessions were revoked); returns the ids."""
        mine = [s.id for s in self._sessions.values() if s.owner == owner]
        await asyncio.gather(*(self.close(sid) for sid in mine))
        return mine

    async def recheck(self) -> builtins.list[str]:
        """Asks `still_allowed` about every session; closes those whose owner is no longer
        allowed (logged out everywhere); returns their ids."""
        if self.still_allowed is None:
            return []
        sessions = [s for s in self._sessions.values() if s._ending is None]
        verdicts = await asyncio.gather(
            *(self.still_allowed(s) for s in sessions), return_exceptions=True
        )
        # Only a definite "no" ends a session: a users service that cannot answer is not a logout.
        ended = [s.id for s, allowed in zip(sessions, verdicts, strict=True) if allowed is False]
        await asyncio.gather(*(self.close(sid) for sid in ended))
        return ended

    async def _recheck_forever(self) -> None:
        while True:
            await asyncio.sleep(self.recheck_interval)
            await self.recheck()

    async def _end_session(self, session: Session) -> None:
        if session.sandboxed:
            await self._end_sandbox(session)
        else:
            await self._end_process_session(session)

    async def _end_sandbox(self, session: Session) -> None:
        """Kills the sandbox: bubblewrap's death ends its PID namespace, so everything in it
        dies (setsid and double-forked processes too); the cgroup catches any straggler."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(session.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(session.pid, signal.SIGKILL)
        session._end_output("closed")
        box = session.box
        await asyncio.to_thread(session.process.wait)
        if box is not None:
            while await asyncio.to_thread(box.members):
                await asyncio.to_thread(box.kill)
                await asyncio.sleep(0.02)
            await asyncio.to_thread(box.remove)

    async def _end_process_session(self, session: Session) -> None:
        """SIGHUP to everything in the shell's session, SIGKILL after `grace`, reap it all."""
        sid = session.pid
        members = await asyncio.to_thread(_session_members, sid)
        _signal_all(sid, members, signal.SIGHUP)
        session._end_output("closed")
        known = {m.pid for m in members} | {sid}
        deadline = time.monotonic() + self.grace
        killed = False
        while True:
            # Polls only the processes known to be in the session; a full scan of /proc (which
            # costs as much as there are processes) confirms the end, catching late children.
            members = await asyncio.to_thread(_still_members, sid, known)
            self._reap(session, members)
            alive = [m for m in members if m.state != "Z"]
            if not alive and session.process.poll() is not None:
                members = await asyncio.to_thread(_session_members, sid)
                self._reap(session, members)
                if all(m.state == "Z" for m in members):
                    break
                known.update(m.pid for m in members)
            if not killed and time.monotonic() >= deadline:
                _signal_all(sid, members, signal.SIGKILL)
                killed = True
            await asyncio.sleep(0.02)
        await asyncio.to_thread(session.process.wait)

    def _reap(self, session: Session, members: builtins.list[_Process]) -> None:
        session.process.poll()
        me = os.getpid()
        for member in members:
            if member.state == "Z" and member.ppid == me and member.pid != session.pid:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(member.pid, os.WNOHANG)

    async def _cull_forever(self) -> None:
        while True:
            await asyncio.sleep(self.cull_interval)
            await self.cull_idle()

    def _resolve_cwd(self, cwd: Path | str | None, within: Path | None = None) -> Path:
        directory = Path(os.path.realpath(self.root / cwd if cwd is not None else self.root))
        if os.path.commonpath([self.root, directory]) != str(self.root):
            raise InvalidArgument.field("cwd", "must be inside the workspace root")
        if within is not None:
            jail = os.path.realpath(within)
            if os.path.commonpath([jail, directory]) != jail:
                raise InvalidArgument.field("cwd", "must be inside the owner's own workspace")
        if not directory.is_dir():
            raise InvalidArgument.field("cwd", "is not a directory")
        return directory

    def _check_capacity(self, owner: str) -> None:
        running = [s for s in self._sessions.values() if s._ending is None]
        starting = sum(self._starting.values())
        if len(running) + starting >= self.max_total:
            raise ResourceExhausted(
                f"the service runs its limit of {self.max_total} terminals",
                retry_after=30.0,
                reason="TERMINAL_LIMIT",
            )
        mine = sum(1 for s in running if s.owner == owner) + self._starting.get(owner, 0)
        if mine >= self.max_per_user:
            raise ResourceExhausted(
                f"at most {self.max_per_user} terminals per user",
                retry_after=30.0,
                reason="TERMINAL_LIMIT",
            )

    def _environment(self, shell: str, home: Path) -> dict[str, str]:
        return {
            "TERM": self.term,
            "LANG": self.lang,
            "HOME": str(home),
            "PATH": SAFE_PATH,
            "SHELL": shell,
            "USER": self.user,
        }

    def _command(
        self, shell: str, cwd: Path, home: Path, slave_fd: int, box: Box | None
    ) -> tuple[builtins.list[str], Path, dict[str, str]]:
        """(argv, where to start it on the host, its environment)."""
        if self.sandbox is None or not self.sandbox.enabled:
            argv = ["/bin/sh", "-c", _CTTY_WRAPPER, shell, os.ttyname(slave_fd)]
            return argv, cwd, self._environment(shell, cwd)
        environment = self._environment(shell, INSIDE_HOME)
        argv = self.sandbox.command(
            [*_SANDBOX_CTTY, shell, "-i"],
            binds=[Bind(home, INSIDE_HOME)],
            cwd=inside_path(home, cwd),
            env=environment,
            box=box,
        )
        return argv, Path("/"), environment

    def _spawn(
        self, shell: str, cwd: Path, cols: int, rows: int, home: Path, box: Box | None = None
    ) -> tuple[subprocess.Popen[bytes], int]:
        master_fd, slave_fd = os.openpty()
        try:
            fcntl.ioctl(slave_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            argv, start_in, environment = self._command(shell, cwd, home, slave_fd, box)
            process = subprocess.Popen(  # noqa: S603 - the shell comes from the allowlist
                argv,
                stdin=slave_fd,
                stdout=slave_fd,
                stderr=slave_fd,
                cwd=start_in,
                # Exactly the allowlist: in a sandbox this is also bubblewrap's own environment,
                # which its PID 1 keeps and which is readable inside.
                env=environment,
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            os.close(master_fd)
            raise
        finally:
            os.close(slave_fd)
        os.set_blocking(master_fd, False)
        return process, master_fd


def _private_bytes(pid: int) -> int:
    """Resident pages not shared with other processes (resident - shared, from statm): what
    one more shell costs, without counting the shared libraries once per shell."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            fields = statm.read().split()
        return max(0, int(fields[1]) - int(fields[2])) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0  # gone meanwhile


def _read_process(pid: int) -> tuple[int, _Process] | None:
    """(kernel session id, the process), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    state, ppid, _pgrp, session = text[text.rindex(b")") + 2 :].split()[:4]
    return int(session), _Process(pid=pid, ppid=int(ppid), state=state.decode())


def _processes_by_session(sids: set[int]) -> dict[int, list[_Process]]:
    """One pass over /proc: the processes of each of these kernel sessions."""
    found: dict[int, list[_Process]] = {sid: [] for sid in sids}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            read = _read_process(int(entry.name))
            if read is not None and read[0] in found:
                found[read[0]].append(read[1])
    return found


def _session_members(sid: int) -> list[_Process]:
    """Every process in the kernel session `sid`, background jobs in their own groups included."""
    return _processes_by_session({sid})[sid]


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _descendants(roots: set[int]) -> set[int]:
    """Every process below these (one pass over /proc)."""
    if not roots:
        return set()
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            read = _read_process(int(entry.name))
            if read is not None:
                children.setdefault(read[1].ppid, []).append(read[1].pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _still_members(sid: int, pids: set[int]) -> list[_Process]:
    """Which of `pids` still exist in session `sid` (zombies included): a few reads instead
    of a scan of every process on the machine."""
    members = []
    for pid in pids:
        read = _read_process(pid)
        if read is not None and read[0] == sid:
            members.append(read[1])
    return members


def _signal_all(sid: int, members: list[_Process], signum: signal.Signals) -> None:
    for target in [m.pid for m in members if m.state != "Z"]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signum)
            if signum == signal.SIGHUP:
                os.kill(target, signal.SIGCONT)  # a stopped job must run to see its SIGHUP
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, signum)


def _become_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False
