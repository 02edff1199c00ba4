"""What /proc tells about processes: kernel sessions, descendants, private memory; and the
signals and reaping built on it. Linux only."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from dataclasses import dataclass

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    state: str


def own_rss() -> int:
    """Resident bytes of this process."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def private_bytes(pid: int) -> int:
    """Resident pages not shared with other processes (resident - shared, from statm): what
    one more shell costs, without counting the shared libraries once per shell."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            fields = statm.read().split()
        return max(0, int(fields[1]) - int(fields[2])) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0  # gone meanwhile


def read_process(pid: int) -> tuple[int, Process] | None:
    """(kernel session id, the process), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    state, ppid, _pgrp, session = text[text.rindex(b")") + 2 :].split()[:4]
    return int(session), Process(pid=pid, ppid=int(ppid), state=state.decode())


def processes_by_session(sids: set[int]) -> dict[int, list[Process]]:
    """One pass over /proc: the processes of each of these kernel sessions."""
    found: dict[int, list[Process]] = {sid: [] for sid in sids}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            read = read_process(int(entry.name))
            if read is not None and read[0] in found:
                found[read[0]].append(read[1])
    return found


def session_members(sid: int) -> list[Process]:
    """Every process in the kernel session `sid`, background jobs in their own groups included."""
    return processes_by_session({sid})[sid]


def descendants(roots: set[int]) -> set[int]:
    """Every process below these (one pass over /proc)."""
    if not roots:
        return set()
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            read = read_process(int(entry.name))
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


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (one pass over /proc)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            read = read_process(int(entry.name))
            if read is not None and read[1].ppid == pid:
                found.append(read[1].pid)
    return found


def ended(pids: list[int]) -> bool:
    """Whether none of `pids` still runs as a child of ours, reaping those that have ended
    (orphans handed to this subreaper when their parent died first). Only our own children
    are waited for: their pids cannot be reused before we reap them."""
    me = os.getpid()
    done = True
    for pid in pids:
        read = read_process(pid)
        if read is None or read[1].ppid != me:
            continue
        if read[1].state != "Z":
            done = False
        else:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
    return done


def still_members(sid: int, pids: set[int]) -> list[Process]:
    """Which of `pids` still exist in session `sid` (zombies included): a few reads instead
    of a scan of every process on the machine."""
    members = []
    for pid in pids:
        read = read_process(pid)
        if read is not None and read[0] == sid:
            members.append(read[1])
    return members


def signal_all(sid: int, members: list[Process], signum: signal.Signals) -> None:
    for target in [m.pid for m in members if m.state != "Z"]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signum)
            if signum == signal.SIGHUP:
                os.kill(target, signal.SIGCONT)  # a stopped job must run to see its SIGHUP
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, signum)


def become_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False
