"""The sandbox builder: its settings, its cgroups (v1 for real on this machine, v2 on a tree laid
out as the kernel lays it out) and real bubblewrap sandboxes started through it."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from services.runtime.cgroups import JOIN_SCRIPT, CgroupTree, script_arguments
from services.runtime.config import ConfigError
from services.runtime.errors import FailedPrecondition, Unavailable
from services.runtime.sandbox import (
    INSIDE_HOME,
    MAX_OUTPUT,
    Bind,
    Limits,
    Sandbox,
    SandboxConfig,
    inside_path,
    load_sandbox_config,
)
from tests.processes import host_processes
from tests.waiting import until

ENV = {"PATH": "/usr/bin:/bin", "HOME": str(INSIDE_HOME), "LANG": "C.UTF-8"}
HAS_CGROUPS = CgroupTree.discover().available


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "user-home"
    (folder / "project").mkdir(parents=True)
    return folder


@pytest.fixture
def sandbox() -> object:
    created = Sandbox.create(
        SandboxConfig(
            mode="bwrap",
            session=Limits(processes=24, memory_bytes=128 << 20, open_files=128),
            user_processes=36,
            user_memory_bytes=256 << 20,
        )
    )
    yield created
    created.close()


async def run(sandbox: Sandbox, home: Path, script: str, **kwargs: object) -> str:
    done = await sandbox.run(
        ["/bin/bash", "-c", script],
        owner=str(kwargs.pop("owner", "ann")),
        binds=[Bind(home, INSIDE_HOME)],
        cwd=INSIDE_HOME / "project",
        env=ENV,
        timeout=float(kwargs.pop("timeout", 20.0)),  # type: ignore[arg-type]
    )
    return done.stdout.decode() + done.stderr.decode()


# --- settings ----------------------------------------------------------------------------------


def test_bubblewrap_is_the_default_and_off_is_refused_in_production() -> None:
    assert load_sandbox_config({}, production=False).mode == "bwrap"
    assert load_sandbox_config({"TERMINAL_SANDBOX": "off"}, production=False).mode == "off"
    with pytest.raises(ConfigError, match="refused when STOCKFOLIO_ENV=production"):
        load_sandbox_config({"TERMINAL_SANDBOX": "off"}, production=True)
    with pytest.raises(ConfigError, match="TERMINAL_SANDBOX must be one of bwrap, off"):
        load_sandbox_config({"TERMINAL_SANDBOX": "docker"}, production=False)


def test_limits_are_read_from_the_environment() -> None:
    config = load_sandbox_config(
        {"SANDBOX_MAX_PROCESSES": "100", "SANDBOX_MEMORY_BYTES": str(512 << 20)},
        production=False,
    )
    assert (config.session.processes, config.session.memory_bytes) == (100, 512 << 20)
    assert (config.user_processes, config.user_memory_bytes) == (200, 1024 << 20)
    with pytest.raises(ConfigError, match="SANDBOX_MAX_PROCESSES must be between"):
        load_sandbox_config({"SANDBOX_MAX_PROCESSES": "2"}, production=False)


def test_a_missing_bubblewrap_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without bwrap
    with pytest.raises(ConfigError, match="apt-get install bubblewrap"):
        load_sandbox_config({}, production=False)


def test_paths_inside_are_relative_to_the_users_folder(tmp_path: Path) -> None:
    assert inside_path(tmp_path, tmp_path) == INSIDE_HOME
    assert inside_path(tmp_path, tmp_path / "a" / "b") == INSIDE_HOME / "a" / "b"
    with pytest.raises(ValueError, match="is not under"):
        inside_path(tmp_path / "a", tmp_path / "b")


# --- cgroup v2, on a tree laid out as the kernel does ------------------------------------------


def test_cgroup_v2_moves_itself_to_a_leaf_and_writes_v2_limits(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    own = root / "system.slice" / "stockfolio.service"
    own.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (own / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.subtree_control").write_text("")
    (own / "cgroup.procs").write_text(f"{os.getpid()}\n")
    tree = CgroupTree._discover_v2(root, ["0::/system.slice/stockfolio.service"])
    assert (tree.version, tree.kind) == (2, "cgroup v2")
    assert (own / "service" / "cgroup.procs").read_text() == str(os.getpid())
    assert (own / "cgroup.subtree_control").read_text() == "+pids +memory +cpu"
    files = tree.limit_files(cpu_weight=50, processes=99, memory=1 << 30)
    assert files == {
        "pids.max": "99",
        "memory.max": str(1 << 30),
        "memory.swap.max": "0",
        "cpu.weight": "50",
    }
    # The process that becomes the sandbox makes, limits and joins its group (JOIN_SCRIPT).
    group = own / "sf" / "user-ann" / "box-1"
    assert tree.plan(("sf", "user-ann", "box-1"), {"pids.max": "99"}) == [
        *("mkdir", str(own / "sf")),
        *("try", str(own / "sf" / "cgroup.subtree_control"), "+pids +memory +cpu"),
        *("mkdir", str(own / "sf" / "user-ann")),
        *("try", str(own / "sf" / "user-ann" / "cgroup.subtree_control"), "+pids +memory +cpu"),
        *("mkdir", str(group)),
        *("set", str(group / "pids.max"), "99"),
        *("join", str(group / "cgroup.procs")),
    ]
    assert "join" not in tree.plan(("sf", "user-ann"), {"pids.max": "9"}, join=False)


async def test_the_join_script_makes_limits_and_joins_before_the_command_runs(
    tmp_path: Path,
) -> None:
    group = tmp_path / "cg" / "box"
    ops = [
        *("mkdir", str(tmp_path / "cg")),
        *("mkdir", str(group)),
        *("set", str(group / "absent.max"), "1"),  # no such limit file here: skipped
        *("try", str(tmp_path / "nowhere" / "x"), "1"),  # failure ignored
        *("join", str(group / "cgroup.procs")),
    ]
    (tmp_path / "cg").mkdir()
    (group).mkdir()
    (group / "pids.max").write_text("max")
    ops += ["set", str(group / "pids.max"), "42"]
    done = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", JOIN_SCRIPT, "join", *script_arguments(ops),
        "--", "/bin/sh", "-c", "echo ran-$$", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await done.communicate()
    pid = (group / "cgroup.procs").read_text().strip()
    assert out.decode().strip() == f"ran-{pid}"  # the command runs as the joined process
    assert (group / "pids.max").read_text().strip() == "42"
    assert not (group / "absent.max").exists()
    refused = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", JOIN_SCRIPT, "join",
        "", "join", str(tmp_path / "missing" / "cgroup.procs"),
        "--", "/bin/sh", "-c", "echo must-not-run", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await refused.communicate()
    assert refused.returncode == 126 and out == b""


def test_without_a_writable_cgroup_only_rlimits_apply(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("pids\n")
    tree = CgroupTree._discover_v2(root, ["0::/not/there"])
    assert not tree.available and tree.kind == "none"
    sandbox = Sandbox(SandboxConfig(mode="bwrap"), cgroups=tree)
    try:
        assert sandbox.limits_applied == "rlimits"
        assert sandbox.open_box("ann", "x") is None
        command = sandbox.command(["true"], binds=[], cwd=Path("/"), env=ENV)
        assert "--as=4294967296" in command  # the address-space bound stands in for memory
    finally:
        sandbox.close()


# --- real sandboxes ------------------------------------------------------------------------------


async def test_the_sandbox_sees_its_own_processes_its_own_files_and_no_network(
    sandbox: Sandbox, home: Path
) -> None:
    (home / "project" / "mine.txt").write_text("mine")
    out = await run(
        sandbox,
        home,
        "id -u; pwd; cat mine.txt; echo; ls /proc | grep -c '^[0-9]';"
        ' tr "\\0" "\\n" < /proc/1/environ | sort | tr "\\n" " "; echo;'
        " (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && echo NET || echo NONET;"
        " touch /usr/x 2>/dev/null || echo RO; echo made > /workspace/new.txt",
    )
    lines = out.splitlines()
    assert lines[:3] == ["1000", "/workspace/project", "mine"]
    assert int(lines[3]) <= 4
    # PID 1, the command itself (run's sandboxes have no bubblewrap init), holds nothing of
    # ours: the environment it was given, and the PWD a shell exports on the way.
    seen = {v for v in lines[4].split() if not v.startswith("PWD=")}
    assert seen == {f"{k}={v}" for k, v in ENV.items()}
    assert lines[5:7] == ["NONET", "RO"]
    assert (home / "new.txt").read_text() == "made\n"


async def test_bubblewrap_as_pid_1_holds_no_environment_of_ours(sandbox: Sandbox) -> None:
    # A terminal's sandbox (bubblewrap its PID 1): at most the environment it was given, none
    # at all when it starts through the cgroup wrapper.
    box = sandbox.open_box("ann", "environ")
    command = sandbox.command(
        ["/bin/sh", "-c", 'tr "\\0" "\\n" < /proc/1/environ && echo read-it'],
        binds=[],
        cwd=Path("/"),
        env=ENV,
        box=box,
    )
    process = await asyncio.create_subprocess_exec(
        *command, env=ENV, stdout=asyncio.subprocess.PIPE, start_new_session=True
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    if box is not None:
        box.empty()
        box.remove()
    *seen, last = out.decode().split()
    assert last == "read-it", out
    assert set(seen) == (set() if HAS_CGROUPS else {f"{k}={v}" for k, v in ENV.items()})


@pytest.mark.skipif(not HAS_CGROUPS, reason="this process may not create cgroups")
async def test_a_box_holds_its_process_limit_and_the_user_ceiling(
    sandbox: Sandbox, home: Path
) -> None:
    fork = (
        "perl -e 'my $n = 0; for (1..100) { my $p = fork(); last unless defined $p;"
        ' if ($p == 0) { sleep 20; exit 0 } $n++ } print "FORKED $n\\n"; kill 9, -$$\''
    )
    first = await run(sandbox, home, f"set -m; {fork}")
    forked = int(re.search(r"FORKED (\d+)", first).group(1))  # type: ignore[union-attr]
    assert 10 <= forked < 24
    # While one box of ann's holds 20 processes, a second box gets only what the user's
    # ceiling (36) leaves, not its own 24.
    held = f"5.{secrets.randbelow(10**6):06d}"
    holder = asyncio.ensure_future(
        run(sandbox, home, f"for i in $(seq 20); do sleep {held} & done; wait; echo held")
    )
    await until(lambda: len(host_processes(["sleep", held])) == 20, "the 20 processes held")
    second = await run(sandbox, home, f"set -m; {fork}")
    assert int(re.search(r"FORKED (\d+)", second).group(1)) < forked  # type: ignore[union-attr]
    assert "held" in await holder


@pytest.mark.skipif(not HAS_CGROUPS, reason="this process may not create cgroups")
async def test_a_box_holds_its_memory_limit(sandbox: Sandbox, home: Path) -> None:
    out = await run(sandbox, home, "python3 -c 'b = bytearray(300 << 20); print(len(b))'; echo $?")
    assert re.search(r"^137$", out, re.M) and str(300 << 20) not in out, out


async def test_a_command_printing_past_the_output_bound_is_ended_and_refused(
    sandbox: Sandbox, home: Path
) -> None:
    """What a command prints is held in the service's own memory, outside the sandbox's
    limits: a git diff of files as large as a user may write took gigabytes of it."""
    with pytest.raises(FailedPrecondition) as raised:
        await run(sandbox, home, f"head -c {MAX_OUTPUT + 1} /dev/zero")
    assert raised.value.reason == "OUTPUT_TOO_LARGE"
    assert "32 MiB" in raised.value.message
    with pytest.raises(FailedPrecondition):
        await run(sandbox, home, f"head -c {MAX_OUTPUT + 1} /dev/zero >&2")
    assert len(await run(sandbox, home, f"head -c {MAX_OUTPUT} /dev/zero")) == MAX_OUTPUT


async def test_a_timeout_kills_everything_in_the_sandbox(sandbox: Sandbox, home: Path) -> None:
    marker = f"70.{secrets.randbelow(10**6):06d}"
    with pytest.raises(Unavailable, match="timed out"):
        await run(
            sandbox,
            home,
            f"setsid sleep {marker} & nohup sleep {marker} >/dev/null & sleep 60",
            timeout=1.5,
        )
    for _ in range(50):
        if not host_processes(["sleep", marker]):
            break
        await asyncio.sleep(0.1)
    assert host_processes(["sleep", marker]) == []


@pytest.mark.skipif(not HAS_CGROUPS, reason="this process may not create cgroups")
async def test_closing_removes_every_group_and_a_later_start_sweeps_dead_ones(
    home: Path,
) -> None:
    first = Sandbox.create(SandboxConfig(mode="bwrap"))
    box = first.open_box("ann", "kept")
    assert box is not None
    command = first.command(["/bin/true"], binds=[], cwd=Path("/"), env=ENV, box=box)
    started = await asyncio.create_subprocess_exec(*command, env=ENV)
    assert await started.wait() == 0
    assert all(p.exists() for p in box.procs)
    first.close()
    assert not any(p.parent.exists() for p in box.procs)
    # A group left by a process that died without closing is swept by the next one.
    base = box.procs[0].parents[3]
    stale = base / "stockfolio-999999999" / "user-x" / "box-y"
    stale.mkdir(parents=True)
    second = Sandbox.create(SandboxConfig(mode="bwrap"))
    try:
        assert not (base / "stockfolio-999999999").exists()
    finally:
        second.close()


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/sbin/runuser").exists(), reason="root only")
async def test_the_process_limit_counts_one_sandbox_not_every_sandbox_of_the_uid(
    tmp_path: Path,
) -> None:
    # As an unprivileged service uid (production), with more processes of that uid already
    # running than one sandbox may have: the sandbox still starts and forks, and its own limit
    # holds. (Given to bubblewrap itself, the limit would count them all and refuse.)
    sandbox = Sandbox(SandboxConfig(mode="bwrap", session=Limits(processes=8)))
    others = [
        await asyncio.create_subprocess_exec(
            "/usr/sbin/runuser", "-u", "nobody", "--", "sleep", "20"
        )
        for _ in range(10)
    ]
    home = Path(tempfile.mkdtemp(prefix="stockfolio-nobody-"))  # pytest's tmp is root's only
    os.chown(home, 65534, 65534)
    try:

        async def inside(script: str) -> str:
            command = sandbox.command(
                ["/bin/sh", "-c", script], binds=[Bind(home, INSIDE_HOME)], cwd=INSIDE_HOME, env=ENV
            )
            process = await asyncio.create_subprocess_exec(
                "/usr/sbin/runuser", "-u", "nobody", "--", *command,
                env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(process.communicate(), 30)
            return out.decode()

        assert "forked-ok" in await inside("sleep 0.1 & sleep 0.1 & wait; echo forked-ok")
        many = await inside("for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1 & done; wait; echo end")
        assert "Cannot fork" in many, many
    finally:
        for process in others:
            process.kill()
            await process.wait()
        sandbox.close()
        shutil.rmtree(home, ignore_errors=True)


def test_cgroup_v1_limits_name_v1_files_and_scale_the_cpu_share() -> None:
    tree = CgroupTree(1, {"pids": Path("/p"), "memory": Path("/m"), "cpu": Path("/c")})
    assert tree.limit_files(cpu_weight=50, processes=77, memory=1 << 28) == {
        "pids.max": "77",
        "memory.limit_in_bytes": str(1 << 28),
        "memory.memsw.limit_in_bytes": str(1 << 28),  # no swap beyond the memory limit
        "cpu.shares": "512",  # half an ordinary process's 1024
    }
    assert tree.plan(("s", "u"), {"pids.max": "77"}, join=False) == [
        *("mkdir", "/c/s"), *("mkdir", "/m/s"), *("mkdir", "/p/s"),
        *("mkdir", "/c/s/u"), *("mkdir", "/m/s/u"), *("mkdir", "/p/s/u"),
        *("set", "/c/s/u/pids.max", "77"), *("set", "/m/s/u/pids.max", "77"),
        *("set", "/p/s/u/pids.max", "77"),
    ]  # fmt: skip


def test_two_sandboxes_in_one_process_keep_their_groups_apart(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    own = root / "stockfolio.service"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("memory pids\n")
    tree = CgroupTree._discover_v2(root, ["0::/stockfolio.service"])
    config = load_sandbox_config({"TERMINAL_SANDBOX": "off"}, production=False)
    first, second = Sandbox(config, cgroups=tree), Sandbox(config, cgroups=tree)
    for sandbox in (first, second):  # a user's box in each, as their wrappers make them
        (own / sandbox._scope / "user-ann" / "box-1").mkdir(parents=True)
    kept = {p.name for p in own.iterdir() if p.name.startswith("stockfolio-")}
    assert len(kept) == 2, kept
    first.close()  # takes its own groups away, not the other's
    assert {p.name for p in own.iterdir() if p.name.startswith("stockfolio-")} == kept - {
        first._scope
    }
    # What a dead process left is swept (its pid no longer runs); this process's are kept.
    (own / "stockfolio-999999999-abcd").mkdir()
    (own / "stockfolio-999999998").mkdir()  # the older naming
    assert sorted(second.sweep()) == ["stockfolio-999999998", "stockfolio-999999999-abcd"]
    assert {p.name for p in own.iterdir() if p.name.startswith("stockfolio-")} == {second._scope}
    second.close()


# --- a sandbox bubblewrap could not set up -----------------------------------------------------

REFUSED = "bwrap: Creating new namespace failed: Resource temporarily unavailable"


def refusing_bwrap(folder: Path, refusals: int) -> Path:
    """A `bwrap` first on PATH that refuses its first `refusals` sandboxes as bubblewrap does
    when a clone meets EAGAIN (that line on stderr, exit 1), then runs the real one. Each
    start leaves a line in `starts`."""
    real = shutil.which("bwrap")
    assert real is not None
    script = folder / "bwrap"
    script.write_text(
        "#!/bin/sh\n"
        f'echo start >> "{folder}/starts"\n'
        f'if [ "$(wc -l < "{folder}/starts")" -le {refusals} ]; then\n'
        f'  echo "{REFUSED}" >&2; exit 1\n'
        "fi\n"
        f'exec {real} "$@"\n'
    )
    script.chmod(0o755)
    return folder / "starts"


@pytest.fixture
def refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    folder = tmp_path / "fake-bin"
    folder.mkdir()

    def make(count: int) -> tuple[Sandbox, Path]:
        starts = refusing_bwrap(folder, count)
        monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
        return Sandbox(SandboxConfig(mode="bwrap")), starts

    return make


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap missing")
async def test_a_sandbox_refused_for_want_of_a_process_is_started_again(
    refusals: object, home: Path
) -> None:
    sandbox, starts = refusals(2)  # type: ignore[operator]
    try:
        assert await run(sandbox, home, "echo ran-once >> ran; cat ran") == "ran-once\n"
    finally:
        sandbox.close()
    assert starts.read_text().count("start") == 3


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap missing")
async def test_a_sandbox_still_refused_is_a_503_not_the_commands_failure(
    refusals: object, home: Path
) -> None:
    sandbox, starts = refusals(99)  # type: ignore[operator]
    try:
        with pytest.raises(Unavailable, match="out of processes") as raised:
            await run(sandbox, home, "echo never")
    finally:
        sandbox.close()
    assert raised.value.reason == "SANDBOX_BUSY"
    assert starts.read_text().count("start") == 3
    assert not (home / "project" / "ran").exists()


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap missing")
async def test_a_command_that_prints_the_same_words_is_not_run_twice(
    refusals: object, home: Path
) -> None:
    # Only bubblewrap's own refusal is retried: a command that fails with any other output (or
    # prints more than that one line) ran, and its answer is returned as it is.
    sandbox, starts = refusals(0)  # type: ignore[operator]
    try:
        out = await run(
            sandbox, home, f"echo x >> ran; echo '{REFUSED}' >&2; echo more >&2; exit 1"
        )
    finally:
        sandbox.close()
    assert out == f"{REFUSED}\nmore\n"
    assert starts.read_text().count("start") == 1
    assert (home / "project" / "ran").read_text() == "x\n"
