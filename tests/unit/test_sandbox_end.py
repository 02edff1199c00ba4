"""When `Sandbox.run` returns (or raises, timed out or cancelled), nothing it started still runs:
no process left in the user's project writing files after git's call has answered and the
writer lock is another call's.

bubblewrap's outer process reported the command's end as soon as the command (its sandbox's
PID 2) exited; the rest of the PID namespace died afterwards, when the sandbox's init, orphaned,
got bubblewrap's --die-with-parent SIGKILL. Killed at a timeout, the outer bubblewrap went first
too. Without cgroups nothing waited for them: a background child that ignored SIGTERM still
wrote in the project after `run` had returned (about one run in three here)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from services.runtime.cgroups import CgroupTree
from services.runtime.errors import Unavailable
from services.runtime.sandbox import INSIDE_HOME, Bind, Completed, Limits, Sandbox, SandboxConfig
from tests.waiting import until

ENV = {"PATH": "/usr/bin:/bin", "HOME": str(INSIDE_HOME), "LANG": "C.UTF-8"}
HAS_CGROUPS = CgroupTree.discover().available
WRITERS = 8
ROUNDS = 4

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap missing")


@pytest.fixture(
    params=[
        "rlimits",
        pytest.param(
            "cgroups",
            marks=pytest.mark.skipif(not HAS_CGROUPS, reason="this process may not create cgroups"),
        ),
    ]
)
def sandbox(request: pytest.FixtureRequest) -> object:
    config = SandboxConfig(mode="bwrap", session=Limits(processes=64))
    tree = CgroupTree.discover() if request.param == "cgroups" else CgroupTree(0, {})
    created = Sandbox(config, cgroups=tree)
    yield created
    created.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "project").mkdir()
    return tmp_path


def writers(marker: str) -> str:
    """Background writers that ignore SIGTERM/SIGHUP and append to the project's files for
    good, each named `marker-<n>` (seen from the host by that name); the script goes on once
    every one of them has written."""
    # Quoted apart in the script, whose own command line must not name them.
    named = f'{marker[:4]}""{marker[4:]}'
    started = "".join(
        f"(trap '' TERM HUP INT; exec -a {named}-{n} bash -c"
        f" 'while :; do echo x >> out-{n}; done') >/dev/null 2>&1 </dev/null & "
        for n in range(WRITERS)
    )
    written = " && ".join(f"[ -s out-{n} ]" for n in range(WRITERS))
    return f"{started} until {written}; do :; done; "


def running(marker: str) -> list[int]:
    """Host pids of processes that can still run code and whose command line names `marker`
    (a process past the point of freeing its memory reads an empty command line)."""
    wanted = marker.encode()
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                    if wanted in cmdline.read():
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def sizes(home: Path) -> list[int]:
    files = [home / "project" / f"out-{n}" for n in range(WRITERS)]
    return [f.stat().st_size if f.exists() else 0 for f in files]


async def after_the_end(home: Path, marker: str) -> tuple[list[int], list[int], list[int]]:
    """What ran at the moment `run` ended, the files' sizes then, and their sizes once every
    writer has gone (unchanged if none wrote after `run` ended)."""
    left, then = running(marker), sizes(home)
    await until(lambda: not running(marker), "the sandbox's writers to end")
    return left, then, sizes(home)


def start(
    sandbox: Sandbox, home: Path, script: str, timeout: float = 60.0
) -> Coroutine[Any, Any, Completed]:
    return sandbox.run(
        ["/bin/bash", "-c", script],
        owner="ann",
        binds=[Bind(home, INSIDE_HOME)],
        cwd=INSIDE_HOME / "project",
        env=ENV,
        timeout=timeout,
    )


async def test_a_finished_command_returns_once_its_background_children_have_ended(
    sandbox: Sandbox, home: Path
) -> None:
    for _ in range(ROUNDS):
        marker = f"writer-{secrets.token_hex(6)}"
        done = await start(sandbox, home, writers(marker) + "echo started")
        left, then, later = await after_the_end(home, marker)
        assert (done.returncode, done.stdout) == (0, b"started\n"), done
        assert left == [], f"{len(left)} processes of the sandbox still ran after run returned"
        assert all(then) and later == then, (then, later)


async def test_a_cancelled_command_is_gone_with_everything_it_started(
    sandbox: Sandbox, home: Path
) -> None:
    for _ in range(ROUNDS):
        marker = f"writer-{secrets.token_hex(6)}"
        task = asyncio.ensure_future(start(sandbox, home, writers(marker) + "sleep 600"))

        def writing(marker: str = marker) -> bool:
            return len(running(marker)) == WRITERS and all(sizes(home))

        await until(writing, "every writer to run")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        left, then, later = await after_the_end(home, marker)
        assert left == [], f"{len(left)} processes of the sandbox still ran after run ended"
        assert later == then


async def test_a_timed_out_command_is_gone_with_everything_it_started(
    sandbox: Sandbox, home: Path
) -> None:
    marker = f"writer-{secrets.token_hex(6)}"
    with pytest.raises(Unavailable, match="timed out"):
        await start(sandbox, home, writers(marker) + "sleep 600", timeout=2.0)
    left, then, later = await after_the_end(home, marker)
    assert any(then), "no writer started before the timeout"
    assert left == [], f"{len(left)} processes of the sandbox still ran after run raised"
    assert later == then
