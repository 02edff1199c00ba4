"""Owns the pseudo-terminals: starts shells under limits, looks them up by owner, culls idle
ones and ends them (with everything they started) on close and at shutdown.

Knows nothing about gRPC; the servicer adapts. Children are spawned and reaped off the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from services.runtime import procfs
from services.runtime.cgroups import Box
from services.runtime.errors import InvalidArgument, NotFound, ResourceExhausted
from services.runtime.sandbox import INSIDE_HOME, Bind, Sandbox, inside_path, warn_unsandboxed
from services.runtime.tasks import cancel_and_wait
from services.terminal.sessions import READ_CHUNK, Session, validate_dimensions

log = logging.getLogger(__name__)

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# The wrapper reopens the slave by name after setsid, which makes it the controlling terminal
# (job control, ^C, SIGWINCH on resize); subprocess cannot do that itself.
_CTTY_WRAPPER = 'exec "$0" -i 0<>"$1" 1>&0 2>&0'
# Inside a sandbox the PTY's name means nothing (the sandbox has its own /dev/pts): setsid -c
# makes the inherited descriptor the controlling terminal instead; -w keeps it as the sandbox's
# main process until the shell exits.
_SANDBOX_CTTY = ("/usr/bin/setsid", "--ctty", "--wait")
# A shell starts with every signal's default handling, whatever the service's was: a signal
# ignored here stays ignored across exec, and a shell cannot undo it for the commands it runs
# (a service started with SIGINT ignored, as an asynchronous command of a script is, ran every
# user's commands deaf to ^C).
_DEFAULT_SIGNALS = ("/usr/bin/env", "--default-signal")
# Seconds a close waits for a sandbox's PID namespace init to end (its processes die with it).
_INIT_WAIT = 10.0


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
        on_closed: Callable[[Session], Awaitable[None]] | None = None,
        on_ended: Callable[[Session], Awaitable[None]] | None = None,
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
        # Told of each session closed for good (deleted, culled, its owner logged out), not of
        # those ended by the shutdown: their record says the replica is gone.
        self.on_closed = on_closed
        # Told of each session whose shell has ended and been reaped (its exit code known).
        self.on_ended = on_ended
        self._stopping = False
        self._sessions: dict[str, Session] = {}
        self._starting: dict[str, int] = {}
        self._culler: asyncio.Task[None] | None = None
        self._rechecker: asyncio.Task[None] | None = None
        # Orphaned background jobs are reparented to us so they can be reaped, not left as
        # zombies under an init that does not reap.
        self.reaps_orphans = procfs.become_subreaper()

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
        elsewhere: int = 0,
    ) -> Session:
        """A new session for `owner` in `cwd` (relative to the root, or absolute inside it; and
        inside `within` too when given: the owner's own part of the root). `elsewhere`: the
        owner's sessions running on other replicas, counted against the per-user limit."""
        shell = shell or self.shells[0]
        if shell not in self.shells:
            raise InvalidArgument.field("shell", f"must be one of {', '.join(self.shells)}")
        validate_dimensions(cols, rows)
        # Resolving touches the filesystem (a shared volume, perhaps): off the event loop.
        directory = await asyncio.to_thread(self._resolve_cwd, cwd, within)
        home = await asyncio.to_thread(_real, within) if within is not None else directory
        self._check_capacity(owner, elsewhere)
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

    def sessions_of(self, owner: str | None = None) -> list[Session]:
        """The owner's sessions, or every session when `owner` is None (admin)."""
        return [s for s in self._sessions.values() if owner is None or s.owner == owner]

    async def close(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is None:
            raise NotFound(f"no terminal session {session_id}")
        await self._terminate(session)
        removed = self._sessions.pop(session_id, None) is not None
        if removed and self.on_closed is not None and not self._stopping:
            await self.on_closed(session)

    async def shutdown(self) -> None:
        self._stopping = True
        for task in (self._culler, self._rechecker):
            await cancel_and_wait(task)
        self._culler = self._rechecker = None
        await asyncio.gather(*(self.close(sid) for sid in list(self._sessions)))

    async def memory(self, sessions: Sequence[Session]) -> int:
        """Resident bytes of every process in these sessions (shells and what they started)."""

        def measure() -> int:
            running = [s for s in sessions if s.state == "running"]
            plain = {s.pid for s in running if not s.sandboxed}
            members = procfs.processes_by_session(plain)
            pids = {m.pid for group in members.values() for m in group}
            boxed = [s for s in running if s.sandboxed]
            # A sandbox's processes are its cgroup's, or (rlimits only) bubblewrap's descendants.
            for session in boxed:
                if session.box is not None:
                    pids |= session.box.members()
            pids |= procfs.descendants({s.pid for s in boxed if s.box is None})
            return sum(procfs.private_bytes(pid) for pid in pids)

        return await asyncio.to_thread(measure)

    async def cull_idle(self) -> list[str]:
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

    async def close_owner(self, owner: str) -> list[str]:
        """Closes every session of `owner` (their sessions were revoked); returns the ids."""
        mine = [s.id for s in self._sessions.values() if s.owner == owner]
        await asyncio.gather(*(self.close(sid) for sid in mine))
        return mine

    async def recheck(self) -> list[str]:
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
        if self.on_ended is not None and not self._stopping:
            try:
                await self.on_ended(session)
            except Exception:  # whoever listens must not keep a session from ending
                log.exception("a session's end hook failed")
        if not self._stopping:
            await self._forget_oldest_ended(session)

    async def _forget_oldest_ended(self, newest: Session) -> None:
        """An ended session stays, with its scrollback, for its owner to read; but a user keeps
        at most `max_per_user` of them (the oldest go first): a loop of shells that print and
        exit held every one until the idle cull (and for good without one)."""
        ended = sorted(
            (
                s
                for s in self._sessions.values()
                if s.owner == newest.owner and s.state != "running" and s is not newest
            ),
            key=lambda s: s.last_activity,
        )
        extra = len(ended) + 1 - self.max_per_user
        await asyncio.gather(*(self.close(s.id) for s in ended[: max(0, extra)]))

    async def _end_sandbox(self, session: Session) -> None:
        """Kills the sandbox: bubblewrap's death ends its PID namespace, so everything in it
        dies (setsid and double-forked processes too); the cgroup catches any straggler.

        Returns once they have died. The namespace's init (bubblewrap's child) is killed with
        it and ends only after every other process in the namespace has: its end is the
        sandbox's. Outer bubblewrap reaped, they were still dying - a closed session's (a
        logged-out owner's) processes ran on for a while, where no cgroup waited for them - and
        the init, handed to this subreaper, stayed a zombie for good. (bubblewrap's
        --die-with-parent kills the init; without a subreaper it is not ours to wait for.)"""
        inits = await asyncio.to_thread(procfs.children, session.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(session.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(session.pid, signal.SIGKILL)
        session._end_output("closed")
        box = session.box
        await asyncio.to_thread(session.process.wait)
        # Nothing tells of a process's end but polling: it is no child of ours until orphaned.
        # Bounded: a process stuck in the kernel (uninterruptible I/O) must not hang the close.
        deadline = asyncio.get_running_loop().time() + _INIT_WAIT
        while not await asyncio.to_thread(procfs.ended, inits):
            if asyncio.get_running_loop().time() > deadline:
                log.warning("sandbox init outlived its close", extra={"pids": inits})
                break
            await asyncio.sleep(0.02)
        if box is not None:
            while await asyncio.to_thread(box.members):
                await asyncio.to_thread(box.kill)
                await asyncio.sleep(0.02)
            await asyncio.to_thread(box.remove)

    async def _end_process_session(self, session: Session) -> None:
        """SIGHUP to everything in the shell's session, SIGKILL after `grace`, reap it all."""
        sid = session.pid
        members = await asyncio.to_thread(procfs.session_members, sid)
        procfs.signal_all(sid, members, signal.SIGHUP)
        session._end_output("closed")
        known = {m.pid for m in members} | {sid}
        deadline = time.monotonic() + self.grace
        killed = False
        while True:
            # Polls only the processes known to be in the session; a full scan of /proc (which
            # costs as much as there are processes) confirms the end, catching late children.
            members = await asyncio.to_thread(procfs.still_members, sid, known)
            self._reap(session, members)
            alive = [m for m in members if m.state != "Z"]
            if not alive and session.process.poll() is not None:
                members = await asyncio.to_thread(procfs.session_members, sid)
                self._reap(session, members)
                if all(m.state == "Z" for m in members):
                    break
                known.update(m.pid for m in members)
            if not killed and time.monotonic() >= deadline:
                procfs.signal_all(sid, members, signal.SIGKILL)
                killed = True
            await asyncio.sleep(0.02)
        await asyncio.to_thread(session.process.wait)

    def _reap(self, session: Session, members: list[procfs.Process]) -> None:
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

    def _check_capacity(self, owner: str, elsewhere: int = 0) -> None:
        running = [s for s in self._sessions.values() if s._ending is None]
        starting = sum(self._starting.values())
        if len(running) + starting >= self.max_total:
            raise ResourceExhausted(
                f"the service runs its limit of {self.max_total} terminals",
                retry_after=30.0,
                reason="TERMINAL_LIMIT",
            )
        mine = sum(1 for s in running if s.owner == owner) + self._starting.get(owner, 0)
        if mine + elsewhere >= self.max_per_user:
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
    ) -> tuple[list[str], Path, dict[str, str]]:
        """(argv, where to start it on the host, its environment)."""
        if self.sandbox is None or not self.sandbox.enabled:
            argv = [*_DEFAULT_SIGNALS, "/bin/sh", "-c", _CTTY_WRAPPER, shell]
            return [*argv, os.ttyname(slave_fd)], cwd, self._environment(shell, cwd)
        environment = self._environment(shell, INSIDE_HOME)
        argv = self.sandbox.command(
            [*_SANDBOX_CTTY, shell, "-i"],
            binds=[Bind(home, INSIDE_HOME)],
            cwd=inside_path(home, cwd),
            env=environment,
            box=box,
        )
        return [*_DEFAULT_SIGNALS, *argv], Path("/"), environment

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


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))
