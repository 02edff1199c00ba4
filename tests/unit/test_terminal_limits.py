"""Bounds a terminal user can otherwise step around: RAM-backed files in the sandbox (/dev,
/dev/shm), the terminal's `data` frames against the socket's send budget, the recorded input
line, passphrases at no-echo prompts and output cut inside a UTF-8 character.

Real bubblewrap sandboxes and real shells in real pseudo-terminals; the facade's output pacing
against a transport that keeps what it is given."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from facade.outbox import ClientSocket, Outbox, json_frame
from facade.plans import Plans
from facade.sockets import SocketUser
from facade.ws_terminal import FRAME_BYTES, TerminalConversation, terminal_bridge
from services.runtime.sandbox import INSIDE_HOME, Bind, Limits, Sandbox, SandboxConfig
from services.terminal.manager import TerminalManager
from services.terminal.sessions import MAX_LINE, Session, output_text
from tests.unit.terminal_output import read_until

ENV = {"PATH": "/usr/bin:/bin", "HOME": str(INSIDE_HOME), "LANG": "C.UTF-8"}
MB = 1 << 20
WAIT = 10.0


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[TerminalManager]:
    async with TerminalManager(
        tmp_path, shells=("/bin/bash", "/bin/sh"), scrollback_bytes=64 * 1024, grace=1.0
    ) as built:
        yield built


async def until_a_program_runs(session: Session, name: str) -> None:
    """Until the program `name` is the terminal's foreground process group (not the shell,
    nor a command that runs before it in the same line: a ^C meant for it would end that one)."""
    deadline = time.monotonic() + WAIT
    while (group := os.tcgetpgrp(session.master_fd)) == session.pid or _command(group) != name:
        assert time.monotonic() < deadline, f"{name} never came to the foreground"
        await asyncio.sleep(0.02)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:  # gone meanwhile
        return ""


# --- the sandbox's RAM-backed files ----------------------------------------------------------


async def test_dev_and_dev_shm_are_as_size_bounded_as_tmp_without_cgroups(tmp_path: Path) -> None:
    """Without cgroups (`sandboxLimits: rlimits`) the only bound on what a shell keeps in
    RAM-backed files is the tmpfs size, and RLIMIT_AS does not count tmpfs pages. /tmp and
    /var/tmp had `--size SANDBOX_TMP_BYTES`, but bubblewrap's `--dev /dev` is a tmpfs of half
    the host's memory, writable by the sandbox user, /dev/shm included: each session could pin
    gigabytes. /dev/shm is now bounded like /tmp, and /dev itself is read-only (its devices
    still work)."""
    home = tmp_path / "home"
    home.mkdir()
    sandbox = Sandbox(SandboxConfig(mode="bwrap", session=Limits(tmp_bytes=8 * MB)))
    try:
        done = await sandbox.run(
            [
                "/bin/bash",
                "-c",
                "head -c 32M /dev/zero > /tmp/a 2>/dev/null; echo tmp=$?;"
                " head -c 32M /dev/zero > /dev/shm/a 2>/dev/null; echo shm=$?;"
                " head -c 32M /dev/zero > /dev/a 2>/dev/null; echo dev=$?;"
                " rm /dev/shm/a; head -c 1M /dev/zero > /dev/shm/small; echo small=$?;"
                " echo gone > /dev/null; echo null=$?;"
                " head -c 4 /dev/urandom | wc -c",
            ],
            owner="ann",
            binds=[Bind(home, INSIDE_HOME)],
            cwd=INSIDE_HOME,
            env=ENV,
            timeout=30.0,
        )
    finally:
        sandbox.close()
    out = done.stdout.decode().split()
    assert out == ["tmp=1", "shm=1", "dev=1", "small=0", "null=0", "4"], done


# --- /ws/terminal output against the socket's send budget ------------------------------------


class _Transport:
    """A connection whose client is a little behind: what is written stays buffered (and is
    kept, to be read back), until the test lets the client read."""

    def __init__(self, buffered: int) -> None:
        self.buffered = buffered
        self.peak = buffered
        self.written = bytearray()

    def get_extra_info(self, name: str) -> None:
        return None

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.buffered += len(data)
        self.peak = max(self.peak, self.buffered)
        self.written += data


class _Ws:
    closed = False


def _data_frames(written: bytes) -> str:
    """The `data` of every text frame written (unmasked, as the facade writes them)."""
    text, at = "", 0
    while at < len(written):
        size, at = written[at + 1] & 0x7F, at + 2
        if size == 126:
            size, at = int.from_bytes(written[at : at + 2]), at + 2
        elif size == 127:
            size, at = int.from_bytes(written[at : at + 8]), at + 8
        message = json.loads(written[at : at + size])
        at += size
        if message["type"] == "data":
            assert size <= FRAME_BYTES + 64, size
            text += message["data"]
    return text


async def test_terminal_output_never_puts_a_socket_past_its_send_budget() -> None:
    """/ws/terminal writes a `data` frame only while less than half the socket's send budget
    (WS_SEND_QUEUE_BYTES, 64 KiB) waits, so that terminal output alone never makes a socket
    'too slow' (4008). A frame was 8192 characters, and in ASCII JSON a control or non-ASCII
    character is six bytes: one frame of a `cat` of a binary was 49 KiB, up to 81 KiB then
    waited, and the next frame written without waiting (a pong, an error, the heartbeat's
    ping) dropped the socket. Frames are now cut by their encoded size."""
    budget = 64 * 1024
    behind = budget // 2 - 1000  # just under half: may be written to
    transport = _Transport(buffered=behind)
    closes: list[tuple[int, str]] = []
    client = ClientSocket(
        _Ws(),  # type: ignore[arg-type]
        transport,  # type: ignore[arg-type]
        path="/ws/terminal",
        limit=budget,
        outbox=Outbox(0.01),
        closer=lambda _client, code, reason: closes.append((code, reason)),
    )
    channel = grpc.aio.insecure_channel("127.0.0.1:1")
    text = "\x01" * 8192 + "é" * 8192 + "😀" * 2048 + "plain" * 4096
    try:
        conversation = TerminalConversation(
            lambda: channel,
            terminal_bridge(Plans()),
            client,
            SocketUser("u", "s", 0.0),
            backlog=budget // 2,
        )
        sending = asyncio.create_task(conversation._output(text))
        while not sending.done():
            await asyncio.sleep(0.02)  # the sender waits for the client to read
            client.send_now(json_frame({"type": "pong"}))  # the client's own ping answered
            assert transport.peak <= budget * 3 // 4 + 64, transport.peak
            transport.buffered = behind  # the client reads a little
        await sending
        assert closes == []
        assert _data_frames(bytes(transport.written)) == text
    finally:
        await channel.close()


# --- what the history keeps of the input -----------------------------------------------------


async def test_a_line_typed_without_end_is_kept_only_as_far_as_a_tty_line(
    manager: TerminalManager,
) -> None:
    """Every write is recorded for the history's `commands`, into the line being typed, which
    only a newline, ^C or ^U cleared: one Python str per character, unbounded. A user writing
    CJK text with no newline made the service hold ~80 bytes per character, for good. The line
    (and so each command) now keeps at most MAX_LINE characters, as a tty's own line does."""
    session = await manager.create("ann", None, 80, 24, "/bin/sh")
    watcher = session.watch(replay=False)
    for _ in range(3):
        session.write(("中" * 21_000).encode())  # 63 KB, under the write limit
    session.write(b"\x15echo after-$((6*7))\n")
    await read_until(watcher, rb"after-42")
    for _ in range(2):
        session.write(("x" * 30_000).encode())
    session.write(b"\n")
    commands = session.history().commands
    assert commands == ["echo after-$((6*7))", "x" * MAX_LINE]
    assert MAX_LINE == 4096


async def test_input_at_a_no_echo_prompt_or_to_a_raw_program_is_not_kept(
    manager: TerminalManager,
) -> None:
    """A passphrase typed at a prompt that turned echo off (`read -s`, su, gpg, ssh-keygen)
    was kept among the history's commands and served by GET .../history for as long as the
    session lived, although the shell never showed it. Input is now kept only while the
    terminal echoes it in canonical mode, or reads raw keys for the shell's own line editor
    (readline, the shell in the foreground): not for a raw-mode program such as vim."""
    session = await manager.create("ann", None, 80, 24, "/bin/bash")
    watcher = session.watch()
    await read_until(watcher, rb"[#$] $")  # typed before the shell reads, input is echoed
    session.write(b"read -r -s -p 'passphrase: ' P; echo; echo got-${#P}\r")
    await read_until(watcher, rb"\rpassphrase: $")
    session.write(b"hunter2-secret\r")
    await read_until(watcher, rb"got-14")
    session.write(b"stty -icanon -echo; cat > /dev/null\r")
    await until_a_program_runs(session, "cat")
    session.write(b":wq hunter3-raw\r")
    session.write(b"\x03")  # ^C ends cat (and drops input not yet read); bash sets its modes back
    await read_until(watcher, rb"[#$] $")
    session.write(b"echo after-$((6*7))\r")
    await read_until(watcher, rb"after-42")
    assert session.history().commands == [
        "read -r -s -p 'passphrase: ' P; echo; echo got-${#P}",
        "stty -icanon -echo; cat > /dev/null",
        "echo after-$((6*7))",
    ]


async def test_a_secret_typed_at_a_silent_read_of_raw_keys_is_not_kept(
    manager: TerminalManager,
) -> None:
    """`read -s -n 4` (a PIN) reads raw keys with echo off in the shell's own process group,
    as readline does: the PIN was kept as the line being typed and prefixed the next command
    in GET .../history ('4321echo after-...'); with `-n 6` and Enter, or at `read -e -s`
    (readline itself, silent), it was a command of its own. Raw keys are now kept only in
    readline's modes at the prompt (CR not translated, ECHOK as the user left it)."""
    session = await manager.create("ann", None, 80, 24, "/bin/bash")
    watcher = session.watch()
    await read_until(watcher, rb"[#$] $")
    session.write(b"read -r -s -n 4 -p 'PIN: ' P; echo; echo got-${#P}\r")
    await read_until(watcher, rb"PIN: $")
    session.write(b"4321")
    await read_until(watcher, rb"got-4\r\n.*[#$] $")
    session.write(b"read -r -s -n 6 -p 'PIN: ' P; echo; echo got-${#P}\r")
    await read_until(watcher, rb"PIN: $")
    session.write(b"5678\r")
    await read_until(watcher, rb"got-4\r\n.*[#$] $")
    session.write(b"read -r -e -s -p 'key: ' P; echo; echo got-${#P}\r")
    await read_until(watcher, rb"key: $")
    session.write(b"hunter2\r")
    await read_until(watcher, rb"got-7\r\n.*[#$] $")
    session.write(b"echo after-$((6*7))\r")
    await read_until(watcher, rb"after-42")
    commands = session.history().commands
    assert not any(secret in c for c in commands for secret in ("4321", "5678", "hunter2"))
    assert commands == [
        "read -r -s -n 4 -p 'PIN: ' P; echo; echo got-${#P}",
        "read -r -s -n 6 -p 'PIN: ' P; echo; echo got-${#P}",
        "read -r -e -s -p 'key: ' P; echo; echo got-${#P}",
        "echo after-$((6*7))",
    ]


# --- output cut at a byte count --------------------------------------------------------------


@pytest.mark.parametrize("scrollback", [1000, 1001])
async def test_trimmed_scrollback_and_recent_output_start_with_a_whole_character(
    tmp_path: Path, scrollback: int
) -> None:
    """The scrollback is trimmed, and `?outputBytes=N` slices it, at a byte count: cut inside
    a multi-byte character, the replay and the history started with U+FFFD (garbage the shell
    never printed), and the text was longer than the N bytes asked for. Both now skip the rest
    of a cut character (one of the two scrollback sizes cuts an é in two)."""
    async with TerminalManager(tmp_path, shells=("/bin/sh",), scrollback_bytes=scrollback) as m:
        session = await m.create("ann")
        watcher = session.watch(replay=False)
        session.write(b"printf '%3000s' '' | sed 's/ /\\xc3\\xa9/g'; echo; echo done-$((6*7))\n")
        await read_until(watcher, rb"done-42\r\n[#$] $")
        await asyncio.sleep(0.1)
        whole = session.history().output
        assert len(whole) in (scrollback - 1, scrollback)
        assert whole.decode().startswith("é"), whole[:10]  # whole characters only
        replayed = await read_until(session.watch(), rb"[#$] $")
        assert replayed == whole
        for size in range(1, 40):
            recent = session.history(output_bytes=size).output
            assert size - 1 <= len(recent) <= size
            assert whole.endswith(recent) and recent.decode() == output_text(recent)


def test_a_character_cut_at_the_end_of_recent_output_is_left_out() -> None:
    """The recent output read while a character's bytes are still arriving ends without it,
    rather than with U+FFFD; bytes that are not UTF-8 at all are still shown as U+FFFD."""
    assert output_text("déjà".encode()[:-1]) == "déj"
    assert output_text(b"a\xffb") == "a\ufffdb"
