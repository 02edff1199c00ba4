"""A terminal session: one shell in a pseudo-terminal, its input, output, scrollback and pacing.

Nothing here blocks the event loop: the PTY is read with `loop.add_reader` and written without
blocking.
"""

from __future__ import annotations

import asyncio
import codecs
import errno
import fcntl
import os
import re
import struct
import subprocess
import termios
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from services.runtime.cgroups import Box
from services.runtime.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from services.terminal.watcher import Watcher

MAX_COLS = 1000
MAX_ROWS = 500
READ_CHUNK = 64 * 1024
# Characters of a recorded input line at most: what a tty's own line holds (N_TTY_BUF_SIZE).
MAX_LINE = 4096
_ESCAPE_SEQUENCE = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[^\[]")
# An input line's editing keys one by one, and runs of the characters it keeps.
_LINE_PIECES = re.compile(r"[\r\n\x03\x15\x08\x7f]|[^\x00-\x1f\x7f]+")


class WriteTooLarge(InvalidArgument):
    """Input larger than one write may carry (the facade answers 413)."""

    reason = "PAYLOAD_TOO_LARGE"


@dataclass(frozen=True)
class History:
    commands: list[str]
    output: bytes


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
    _line: str = ""
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
        watcher = Watcher(self._unwatch, self.watcher_buffer_bytes)
        if replay:
            watcher.replay(bytes(self._scrollback))
        if self.state == "running":
            self._watchers.add(watcher)
        else:
            watcher.end()
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
            output = output[_continuation_bytes(output) :]
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
        """Keeps the lines typed at a command line for the history (editing keys applied, at
        most MAX_LINE characters each, as a tty's own line)."""
        if not self._reads_a_command_line():
            # What was being typed went to another reader: it is not joined to the next line.
            self._line = ""
            return
        text = _ESCAPE_SEQUENCE.sub(b"", data).decode("utf-8", errors="replace")
        line = self._line
        for piece in _LINE_PIECES.findall(text):
            if piece in ("\r", "\n"):
                command = line.strip()
                if command:
                    self._commands.append(command)
                line = ""
            elif piece in ("\x7f", "\x08"):
                line = line[:-1]
            elif piece in ("\x03", "\x15"):  # ^C and ^U discard the line
                line = ""
            elif len(line) < MAX_LINE:
                line += piece[: MAX_LINE - len(line)]
        self._line = line

    def _reads_a_command_line(self) -> bool:
        """Whether what is typed now goes to a command line, by the terminal's own modes (the
        shell's, read on the master): not to a prompt that turned echo off (a passphrase at
        `read -s`, su, ssh-keygen, gpg), nor to a program reading raw keys (vim, less, a
        pinentry). The shell's line editor reads raw keys too (readline turns canonical mode
        and echo off while it reads a command), so raw input is kept only while the shell
        itself, the session's leader, is the foreground process group, and only in readline's
        modes: it tells CR from NL (ICRNL off) and leaves ECHOK alone, where the shell's own
        raw reads (`read -n`, `-N`, `-d`: a PIN, 'press any key') translate CR and every
        `read -s` (with `-e` too) turns ECHOK off with echo."""
        try:
            attributes = termios.tcgetattr(self.master_fd)
            input_modes, modes = attributes[0], attributes[3]
            if modes & termios.ICANON:
                return bool(modes & termios.ECHO)
            if input_modes & termios.ICRNL or not modes & termios.ECHOK:
                return False
            foreground = os.tcgetpgrp(self.master_fd)
            return os.getsid(foreground) == foreground
        except OSError:  # the shell is gone, or the group's leader: nothing to keep
            return False

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
            # A replay starts with a whole character, not the rest of one (U+FFFD).
            del self._scrollback[: _continuation_bytes(self._scrollback)]
        self._touch()
        for watcher in list(self._watchers):
            watcher.offer(chunk)
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
            watcher.end()
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


def _continuation_bytes(output: bytes | bytearray) -> int:
    """How many bytes at the start of `output` end a UTF-8 character begun before it (none to
    three): output cut at a byte count starts after them."""
    count = 0
    while count < min(3, len(output)) and output[count] & 0xC0 == 0x80:
        count += 1
    return count


def output_text(output: bytes) -> str:
    """Output as text: bytes that are not UTF-8 replaced (U+FFFD), and a character cut at the
    end (the rest is still to come) left out."""
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(output)
