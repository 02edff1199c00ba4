"""The terminal manager with real shells in real pseudo-terminals; no gRPC."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.runtime.errors import InvalidArgument, NotFound, ResourceExhausted
from services.runtime.sandbox import Sandbox, SandboxConfig
from services.terminal.manager import TerminalManager
from services.terminal.sessions import Session, WriteTooLarge
from services.terminal.watcher import DROP_NOTE, Watcher
from tests.processes import host_processes
from tests.unit.terminal_output import read_until
from tests.waiting import until

SH = "/bin/sh"
WAIT = 10.0


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[TerminalManager]:
    (tmp_path / "project").mkdir()
    async with TerminalManager(
        tmp_path,
        max_per_user=3,
        max_total=5,
        scrollback_bytes=64 * 1024,
        idle_timeout=3600,
        shells=(SH,),
        grace=1.0,
    ) as built:
        yield built


async def run(session: Session, command: str, marker: str) -> bytes:
    """Runs `command` and returns the output up to the line `marker` prints after it."""
    watcher = session.watch(replay=False)
    session.write(f"{command}; echo {marker}-$((40+2))\n".encode())
    try:
        return await read_until(watcher, f"{marker}-42".encode())
    finally:
        watcher.close()


def reaped(pid: int) -> bool:
    """True when `pid` is no longer our child waiting to be reaped (no zombie left)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def foreground(session: Session) -> str:
    """The command of the terminal's foreground process group (its leader's name once it has
    run its program: before its exec, a shell's child still bears the shell's name)."""
    try:
        group = os.tcgetpgrp(session.master_fd)
        return Path(f"/proc/{group}/comm").read_text().strip()
    except OSError:  # no group yet, or gone meanwhile
        return ""


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_echo_round_trips_through_write_and_watch(manager: TerminalManager) -> None:
    session = await manager.create("alice", "project", 80, 24, SH)
    watcher = session.watch()
    session.write(b"echo round-$((6*7))\n")
    assert b"round-42" in await read_until(watcher, rb"round-42")
    assert session.state == "running"
    assert re.fullmatch(r"session_\d+_[0-9a-f]+", session.id)


async def test_a_new_watcher_replays_the_scrollback(manager: TerminalManager) -> None:
    session = await manager.create("alice", "project", 80, 24, SH)
    await run(session, "echo earlier-$((1+1))", "done")
    late = session.watch()
    replayed = await read_until(late, rb"done-42")
    assert b"earlier-2" in replayed


async def test_resize_changes_what_stty_reports(manager: TerminalManager) -> None:
    session = await manager.create("alice", "project", 80, 24, SH)
    assert re.search(rb"\b24 80\b", await run(session, "stty size", "first"))
    session.resize(132, 50)
    assert (session.cols, session.rows) == (132, 50)
    assert re.search(rb"\b50 132\b", await run(session, "stty size", "second"))
    with pytest.raises(InvalidArgument):
        session.resize(0, 50)


async def test_the_shell_sees_only_allowlisted_environment_variables(
    manager: TerminalManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_SECRET", "jwt-leak-canary")
    monkeypatch.setenv("OPENAI_API_KEY", "key-leak-canary")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db-leak-canary")
    session = await manager.create("alice", "project", 200, 24, SH)
    output = await run(session, "env | sort", "envdone")
    assert b"leak-canary" not in output
    for name in (b"JWT_SECRET", b"OPENAI_API_KEY", b"DATABASE_URL"):
        assert name + b"=" not in output
    assert f"HOME={manager.root / 'project'}".encode() in output
    assert b"PATH=/usr/local/bin:/usr/bin:/bin" in output
    assert f"SHELL={SH}".encode() in output
    assert re.search(rb"(?m)^TERM=xterm-256color", output)


async def test_the_shell_starts_in_the_requested_directory(manager: TerminalManager) -> None:
    session = await manager.create("alice", "project", 200, 24, SH)
    assert f"{manager.root / 'project'}\r\n".encode() in await run(session, "pwd", "pwddone")


async def test_a_working_directory_outside_the_root_is_refused(
    manager: TerminalManager, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (manager.root / "escape").symlink_to(outside)
    for cwd in ("..", "../..", str(outside), "escape", "project/../../"):
        with pytest.raises(InvalidArgument) as caught:
            await manager.create("alice", cwd, 80, 24, SH)
        assert caught.value.fields == [("cwd", "must be inside the workspace root")]
    assert manager.sessions_of("alice") == []


async def test_bad_dimensions_and_unlisted_shells_are_refused(manager: TerminalManager) -> None:
    for cols, rows in ((0, 24), (1001, 24), (80, 0), (80, 501)):
        with pytest.raises(InvalidArgument):
            await manager.create("alice", "project", cols, rows, SH)
    with pytest.raises(InvalidArgument) as caught:
        await manager.create("alice", "project", 80, 24, "/usr/bin/python3")
    assert caught.value.fields[0][0] == "shell"
    assert manager.sessions_of("alice") == []


async def test_per_user_and_global_caps_answer_resource_exhausted(
    manager: TerminalManager,
) -> None:
    for _ in range(3):
        await manager.create("alice", "project", 80, 24, SH)
    with pytest.raises(ResourceExhausted) as per_user:
        await manager.create("alice", "project", 80, 24, SH)
    assert per_user.value.retry_after > 0
    await manager.create("bob", "project", 80, 24, SH)
    await manager.create("carol", "project", 80, 24, SH)
    with pytest.raises(ResourceExhausted):
        await manager.create("dave", "project", 80, 24, SH)
    await manager.close(manager.sessions_of("alice")[0].id)
    await manager.create("dave", "project", 80, 24, SH)


async def sleep_in_background(session: Session, *, ignoring: str = "") -> int:
    """The pid of a `sleep` the session's shell starts in the background (`trap`ping the
    signal `ignoring` first)."""
    trap = f"trap '' {ignoring}; " if ignoring else ""
    output = await run(session, f"{trap}sleep 1000 & echo BG=$!", "started")
    found = re.search(rb"BG=(\d+)", output)
    assert found is not None, output
    return int(found.group(1))


async def test_close_ends_the_whole_process_group_and_leaves_no_zombie(
    manager: TerminalManager,
) -> None:
    session = await manager.create("alice", "project", 80, 24, SH)
    background = await sleep_in_background(session)
    shell = session.pid
    assert not gone(background)
    watcher = session.watch(replay=False)
    await manager.close(session.id)
    assert gone(shell)
    assert gone(background)
    assert reaped(shell)
    # The watcher ends; at most the shell's next prompt got into it before the close.
    assert b"".join([chunk async for chunk in watcher]).strip() in (b"", b"#", b"$")
    assert session.state == "closed"
    with pytest.raises(NotFound):
        manager.get("alice", session.id)


async def test_a_shell_that_ignores_sighup_is_killed_after_the_grace_period(
    manager: TerminalManager,
) -> None:
    session = await manager.create("alice", "project", 80, 24, SH)
    stubborn = await sleep_in_background(session, ignoring="HUP")
    started = time.monotonic()
    await manager.close(session.id)
    assert gone(session.pid)
    assert gone(stubborn)
    assert time.monotonic() - started >= manager.grace * 0.9


async def test_another_owners_session_and_unknown_ids_are_not_found(
    manager: TerminalManager,
) -> None:
    session = await manager.create("alice", "project", 80, 24, SH)
    assert manager.get("alice", session.id) is session
    with pytest.raises(NotFound):
        manager.get("mallory", session.id)
    with pytest.raises(NotFound):
        manager.get("alice", "session_0_missing")
    assert manager.sessions_of("mallory") == []
    assert manager.sessions_of("alice") == [session]
    assert manager.sessions_of() == [session]


async def test_a_yes_flood_does_not_starve_another_sessions_echo(
    manager: TerminalManager,
) -> None:
    flood = await manager.create("alice", "project", 80, 24, SH)
    flood.write(b"yes\n")
    await until(
        lambda: len(flood.history().output) == manager.scrollback_bytes, "a full scrollback"
    )
    quiet = await manager.create("bob", "project", 80, 24, SH)
    started = time.monotonic()
    await run(quiet, "echo still-here", "quiet")
    assert time.monotonic() - started < 5.0
    await manager.close(flood.id)
    assert gone(flood.pid)


async def test_a_watcher_that_falls_behind_is_dropped_with_a_note(tmp_path: Path) -> None:
    # A reader keeping up holds at most about two PTY reads (64 KiB each) at once; one that
    # never reads passes the bound with the first 150 kB of a 400 kB flood.
    async with TerminalManager(
        tmp_path, shells=(SH,), grace=1.0, watcher_buffer_bytes=150_000
    ) as small:
        session = await small.create("alice", None, 80, 24, SH)
        slow = session.watch(replay=False)
        keeping_up = session.watch(replay=False)
        session.write(b"head -c 400000 /dev/zero | tr '\\0' x; echo flood-$((40+2))\n")
        await read_until(keeping_up, rb"flood-42")
        assert slow.dropped
        assert [chunk async for chunk in slow] == [DROP_NOTE]
        assert not keeping_up.dropped


async def test_oversized_writes_are_refused(manager: TerminalManager) -> None:
    session = await manager.create("alice", "project", 80, 24, SH)
    with pytest.raises(WriteTooLarge) as caught:
        session.write(b"x" * (manager.max_write_bytes + 1))
    assert caught.value.reason == "PAYLOAD_TOO_LARGE"


async def test_history_holds_entered_commands_and_recent_output(
    manager: TerminalManager,
) -> None:
    session = await manager.create("alice", "project", 80, 24, SH)
    session.write(b"echo one\r")
    session.write(b"echo twx\x7fo\n")
    await run(session, "echo three", "hist")
    history = session.history()
    assert history.commands == ["echo one", "echo two", "echo three; echo hist-$((40+2))"]
    assert b"hist-42" in history.output


async def test_a_shell_that_exits_ends_its_watchers_and_is_reaped(
    manager: TerminalManager,
) -> None:
    session = await manager.create("alice", "project", 80, 24, SH)
    watcher = session.watch()
    session.write(b"exit 3\n")
    await asyncio.wait_for(_drain(watcher), WAIT)
    assert session.state == "exited"
    await manager.close(session.id)
    assert session.exit_code == 3
    assert gone(session.pid)


async def _drain(watcher: Watcher) -> None:
    async for _ in watcher:
        pass


async def test_idle_sessions_are_culled(tmp_path: Path) -> None:
    async with TerminalManager(
        tmp_path, shells=(SH,), grace=1.0, idle_timeout=0.5, cull_interval=0.1
    ) as culling:
        idle = await culling.create("alice", None, 80, 24, SH)
        for _ in range(int(WAIT / 0.1)):
            if not culling.sessions_of("alice"):
                break
            await asyncio.sleep(0.1)
        assert culling.sessions_of("alice") == []
        assert idle.state == "closed"
        assert gone(idle.pid)


async def test_shutdown_closes_every_session(tmp_path: Path) -> None:
    built = TerminalManager(tmp_path, shells=(SH,), grace=1.0)
    built.start()
    sessions = [await built.create(owner, None, 80, 24, SH) for owner in ("a", "b", "c")]
    await built.shutdown()
    assert built.sessions_of() == []
    assert all(gone(s.pid) for s in sessions)


async def test_ctrl_c_interrupts_the_foreground_command(manager: TerminalManager) -> None:
    session = await manager.create("alice", "project", 80, 24, SH)
    session.write(b"sleep 1000\n")
    # A ^C that reaches the shell before sleep holds the terminal is the shell's: sleep then
    # runs its 1000 s and the next line waits behind it (CI's failure, waiting a fixed 0.3 s).
    await until(lambda: foreground(session) == "sleep", "sleep in the foreground")
    session.write(b"\x03")
    started = time.monotonic()
    await run(session, "echo after", "interrupted")
    assert time.monotonic() - started < 5.0


async def test_a_command_takes_ctrl_c_although_the_service_ignores_it(tmp_path: Path) -> None:
    """A signal the service ignores stays ignored across exec, and no shell can undo that for
    the commands it runs: started with SIGINT ignored (as a script's asynchronous command is),
    the service ran every user's commands deaf to ^C (CI's failures: sleep and cat went on,
    and the line typed after ^C waited behind them). A shell now starts with the defaults."""
    ignored = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGQUIT)}
    try:
        async with TerminalManager(tmp_path, shells=(SH,), grace=1.0) as deaf:
            session = await deaf.create("alice", shell=SH)
            for key, name in ((b"\x03", "SIGINT"), (b"\x1c", "SIGQUIT")):
                session.write(b"sleep 1000\n")
                await until(lambda: foreground(session) == "sleep", "sleep in the foreground")
                session.write(key)
                await run(session, "echo after", "interrupted")
                assert foreground(session) == "sh", name
    finally:
        for sig, handler in ignored.items():
            signal.signal(sig, handler)


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of the processes whose parent is `pid`."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
            if int(ppid) == pid:
                found.append((int(entry.name), state))
    return found


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap missing")
async def test_closing_a_sandboxed_session_returns_once_everything_in_it_has_ended(
    tmp_path: Path,
) -> None:
    """Killing bubblewrap ends its PID namespace, but not at once: its init dies after it and
    ends every process in the namespace first. Without a cgroup to wait on, close (a logout
    everywhere) returned while the session's processes still ran (CI: a `setsid sleep` alive
    after the owner's shells had ended), and the init, handed to the service (a subreaper)
    once bubblewrap was gone, stayed its zombie for good. Close now waits for the init."""
    sandbox = Sandbox(SandboxConfig(mode="bwrap"))  # no cgroups: nothing else waits for them
    try:
        async with TerminalManager(
            tmp_path, shells=("/bin/bash",), grace=1.0, sandbox=sandbox
        ) as boxed:
            assert boxed.reaps_orphans
            session = await boxed.create("ann", None, 80, 24, "/bin/bash")
            sleeping = ["sleep", f"500.{secrets.randbelow(10**6):06d}"]
            session.write(f"for i in $(seq 50); do setsid {' '.join(sleeping)} & done\n".encode())
            await until(lambda: len(host_processes(sleeping)) == 50, "50 sleeps in the sandbox")
            inits = [pid for pid, _ in children(session.pid)]
            assert len(inits) == 1  # bubblewrap's child: the namespace's init
            await boxed.close(session.id)
            assert host_processes(sleeping) == []
            assert [c for c in children(os.getpid()) if c[0] in inits] == []  # reaped
    finally:
        sandbox.close()


async def test_output_over_the_rate_limit_pauses_reading_the_pty(tmp_path: Path) -> None:
    """A flood is throttled at the source: the PTY is not read while the session is over its
    budget (the shell blocks on its writes), and reading resumes by itself."""
    async with TerminalManager(tmp_path, shells=(SH,), output_rate=64 * 1024) as limited:
        session = await limited.create("ann", shell=SH)
        watcher = session.watch(replay=False)
        session.write(b"yes | head -c 100000; echo done-$((40+2))\n")
        output = await read_until(watcher, b"done-42")
        # 150 kB on the terminal (\n -> \r\n) against 64 kB/s: paused again and again.
        assert session.paused_count >= 2
        assert output.count(b"y\r\n") == 50_000  # nothing was lost by pausing
        watcher.close()


async def test_sessions_report_their_project_and_the_memory_of_their_processes(
    manager: TerminalManager,
) -> None:
    session = await manager.create("ann", cwd="project", shell=SH, project_id="p1")
    assert session.project_id == "p1"
    assert session.watchers == 0
    watcher = session.watch()
    assert session.watchers == 1
    watcher.close()
    memory = await manager.memory([session])
    assert 0 < memory < 200 * 1024 * 1024  # a shell's private resident pages: some, not absurd


async def test_a_directory_outside_the_owners_own_part_of_the_root_is_refused(
    manager: TerminalManager, tmp_path: Path
) -> None:
    (tmp_path / "ann" / "notes").mkdir(parents=True)
    (tmp_path / "bob").mkdir()
    session = await manager.create("ann", cwd="ann/notes", shell=SH, within=tmp_path / "ann")
    assert session.cwd == (tmp_path / "ann" / "notes").resolve()
    with pytest.raises(InvalidArgument) as refused:
        await manager.create("ann", cwd="bob", shell=SH, within=tmp_path / "ann")
    assert refused.value.fields == [("cwd", "must be inside the owner's own workspace")]


async def test_without_a_sandbox_every_start_and_every_session_says_so_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING")
    async with TerminalManager(tmp_path, shells=(SH,), grace=0.5) as unsandboxed:
        assert [r.getMessage() for r in caplog.records if "SANDBOX OFF" in r.getMessage()] == [
            "SANDBOX OFF: every terminal session runs with the service's own user, files and"
            " network (TERMINAL_SANDBOX=off, development only)"
        ]
        session = await unsandboxed.create("ann")
        warned = [r for r in caplog.records if "SANDBOX OFF" in r.getMessage()]
        assert len(warned) == 2 and session.id in warned[1].getMessage()
        assert warned[1].levelname == "WARNING" and not session.sandboxed
