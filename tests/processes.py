"""Finding processes on the host by their command line: a sandboxed process's own pid means
nothing outside its PID namespace, so tests name it by a unique argument instead."""

from __future__ import annotations

import os


def host_processes(argv: list[str]) -> list[int]:
    """Host pids whose command line is exactly `argv` (zombies have none, so they don't count)."""
    wanted = b"\0".join(a.encode() for a in argv) + b"\0"
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                    if cmdline.read() == wanted:
                        found.append(int(entry.name))
            except OSError:
                continue
    return found
