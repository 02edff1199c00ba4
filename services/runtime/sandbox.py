"""The sandbox every process run on behalf of a user starts in: bubblewrap, cgroups, rlimits.

A shell or a git command for user U sees its own PID, IPC, UTS, cgroup, user and network
namespaces; a read-only system (`/usr` and the few `/etc` files a shell needs); a private
`/tmp` and `/dev`; and, writable, only the folders it is given (U's own workspace). It runs as
an unprivileged uid with an environment built from an allowlist (`--setenv`); bubblewrap itself,
the sandbox's PID 1 whose `/proc/1/environ` is readable inside, starts with no environment (or
only that allowlist, without cgroups). Limits come from cgroups when this process may create
child groups (v1 or v2) and from rlimits (`prlimit`) always. Killing the outer bubblewrap ends
the sandbox's PID namespace, so every process in it dies, `setsid` and double-forked ones
included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.runtime.config import ConfigError, Env
from services.runtime.errors import Unavailable

log = logging.getLogger(__name__)

KB = 1024
MB = 1024 * KB
GB = 1024 * MB
SANDBOX_UID = 1000
SANDBOX_GID = 1000
SANDBOX_USER = "stockfolio"
# Where a user's own folder appears inside: the shell's home and the parent of its projects.
INSIDE_HOME = Path("/workspace")
MODES = ("bwrap", "off")
INSTALL_HINT = (
    "bubblewrap (bwrap) is not installed: run `make install` as root (it installs it with"
    " apt-get), or `apt-get install bubblewrap` / `dnf install bubblewrap`; TERMINAL_SANDBOX=off"
    " runs shells unsandboxed, for development only"
)
# The /etc files a shell and git need; nothing that names the host's users or services.
_ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "bash.bashrc",
    "profile",
    "inputrc",
    "localtime",
    "terminfo",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "mime.types",
    "magic",
    "vim",
    "nanorc",
    "bash_completion.d",
)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Limits:
    """What one sandbox (a terminal session, a git command) may use."""

    processes: int = 256
    memory_bytes: int = 1 * GB
    file_size_bytes: int = 1 * GB
    open_files: int = 1024
    # Relative CPU share: 100 is an ordinary process's share (v2 cpu.weight; v1 shares scaled).
    cpu_weight: int = 100
    tmp_bytes: int = 256 * MB


@dataclass(frozen=True)
class SandboxConfig:
    mode: str
    session: Limits = field(default_factory=Limits)
    # The ceiling over all of one user's sandboxes in this process.
    user_processes: int = 512
    user_memory_bytes: int = 2 * GB

    @property
    def enabled(self) -> bool:
        return self.mode == "bwrap"


def load_sandbox_config(
    environ: Mapping[str, str], *, production: bool, variable: str = "TERMINAL_SANDBOX"
) -> SandboxConfig:
    """Reads the sandbox settings; `off` is refused in production and needs bwrap otherwise."""
    env = Env(environ)
    mode = env.str(variable, "bwrap").lower()
    if mode not in MODES:
        raise ConfigError(f"{variable} must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off" and production:
        raise ConfigError(
            f"{variable}=off is refused when STOCKFOLIO_ENV=production: user processes must run"
            " in a sandbox"
        )
    if mode == "bwrap" and shutil.which("bwrap") is None:
        raise ConfigError(INSTALL_HINT)
    session = Limits(
        processes=env.int("SANDBOX_MAX_PROCESSES", 256, minimum=8, maximum=1_000_000),
        memory_bytes=env.int("SANDBOX_MEMORY_BYTES", GB, minimum=16 * MB, maximum=2**46),
        file_size_bytes=env.int("SANDBOX_FILE_SIZE_BYTES", GB, minimum=MB, maximum=2**46),
        open_files=env.int("SANDBOX_OPEN_FILES", 1024, minimum=64, maximum=1_048_576),
        cpu_weight=env.int("SANDBOX_CPU_WEIGHT", 100, minimum=1, maximum=10_000),
        tmp_bytes=env.int("SANDBOX_TMP_BYTES", 256 * MB, minimum=MB, maximum=2**40),
    )
    return SandboxConfig(
        mode=mode,
        session=session,
        user_processes=env.int(
            "SANDBOX_USER_MAX_PROCESSES", 2 * session.processes, minimum=session.processes
        ),
        user_memory_bytes=env.int(
            "SANDBOX_USER_MEMORY_BYTES",
            2 * session.memory_bytes,
            minimum=session.memory_bytes,
            maximum=2**46,
        ),
    )


def warn_unsandboxed(what: str) -> None:
    """Said loudly on every start and every session when sandboxing is off."""
    log.warning(
        "SANDBOX OFF: %s runs with the service's own user, files and network"
        " (TERMINAL_SANDBOX=off, development only)",
        what,
    )


@dataclass(frozen=True)
class Bind:
    """A host folder made visible inside the sandbox at `target`."""

    source: Path
    target: Path
    writable: bool = True


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes


# --- cgroups ---------------------------------------------------------------------------------


class CgroupTree:
    """Child groups of this process's own cgroup: `<own>/stockfolio-<pid>/<user>/<box>`.

    v1 keeps one hierarchy per controller (pids, memory, cpu); v2 one tree with controllers
    enabled top-down. Either way a group is made only where this process may write, and when it
    may not (a container without delegation) `available` is False and rlimits are all we have.
    """

    CONTROLLERS = ("pids", "memory", "cpu")

    def __init__(self, version: int, bases: Mapping[str, Path]) -> None:
        self.version = version
        self._bases = dict(bases)  # controller -> this process's group folder for it

    @property
    def available(self) -> bool:
        return bool(self._bases)

    @property
    def kind(self) -> str:
        return f"cgroup v{self.version}" if self._bases else "none"

    @classmethod
    def discover(cls, root: Path = Path("/sys/fs/cgroup")) -> CgroupTree:
        try:
            own = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:
            return cls(0, {})
        if (root / "cgroup.controllers").exists():
            return cls._discover_v2(root, own)
        return cls._discover_v1(root, own)

    @classmethod
    def _discover_v1(cls, root: Path, own: Sequence[str]) -> CgroupTree:
        bases: dict[str, Path] = {}
        for line in own:
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(","):
                if controller in cls.CONTROLLERS and controller not in bases:
                    folder = root / controller / path.lstrip("/")
                    if folder.is_dir() and os.access(folder, os.W_OK):
                        bases[controller] = folder
        return cls(1 if bases else 0, bases)

    @classmethod
    def _discover_v2(cls, root: Path, own: Sequence[str]) -> CgroupTree:
        path = next((line[3:] for line in own if line.startswith("0::")), None)
        if path is None:
            return cls(0, {})
        folder = root / path.lstrip("/")
        if not os.access(folder, os.W_OK):
            return cls(0, {})
        available = set((folder / "cgroup.controllers").read_text().split())
        wanted = [c for c in cls.CONTROLLERS if c in available]
        if not wanted:
            return cls(0, {})
        # "No internal processes": a group that hands controllers to children holds no process
        # itself, so this process first moves into a leaf of its own.
        leaf = folder / "service"
        try:
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
            (folder / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
        except OSError as error:
            log.warning("cgroup v2 at %s is not delegated to us (%s): rlimits only", folder, error)
            return cls(0, {})
        return cls(2, {c: folder for c in wanted})

    def _folders(self, *parts: str) -> list[Path]:
        bases = {self._bases[c] for c in self._bases}
        return [base.joinpath(*parts) for base in sorted(bases)]

    def plan(
        self, parts: Sequence[str], limits: Mapping[str, str], *, join: bool = True
    ) -> list[str]:
        """What makes the group `parts` (parents included), writes its limits and moves a
        process into it, as operations for the wrapper that starts the sandbox (JOIN_SCRIPT).

        The wrapper does this in the new process, before it becomes the sandbox: creating and
        joining cgroups waits on the kernel's cgroup lock, which every other sandbox starting at
        the same time takes too, and that wait belongs to the new shell, not to the request."""
        ops: list[str] = []
        for depth in range(1, len(parts) + 1):
            for folder in self._folders(*parts[:depth]):
                ops += ["mkdir", str(folder)]
                if self.version == 2 and depth < len(parts):
                    controllers = " ".join(f"+{c}" for c in self._bases)
                    ops += ["try", str(folder / "cgroup.subtree_control"), controllers]
        leaves = self._folders(*parts)
        for folder in leaves:
            for name, value in limits.items():
                ops += ["set", str(folder / name), value]
        for folder in leaves if join else ():
            ops += ["join", str(folder / "cgroup.procs")]
        return ops

    def procs(self, parts: Sequence[str]) -> list[Path]:
        return [folder / "cgroup.procs" for folder in self._folders(*parts)]

    def members(self, parts: Sequence[str]) -> set[int]:
        found: set[int] = set()
        for folder in self._folders(*parts):
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in (folder / "cgroup.procs").read_text().split())
        return found

    def read(self, parts: Sequence[str], name: str) -> int | None:
        for folder in self._folders(*parts):
            with contextlib.suppress(OSError, ValueError):
                return int((folder / name).read_text().split()[0])
        return None

    def remove(self, parts: Sequence[str]) -> None:
        """Removes the group (rmdir fails on a group still in use). Parents stay: another box
        of the same user may be joining them right now."""
        for folder in self._folders(*parts):
            with contextlib.suppress(OSError):
                folder.rmdir()

    def remove_tree(self, parts: Sequence[str]) -> None:
        """Kills what is left under `parts` and removes every group there, deepest first."""
        for folder in self._folders(*parts):
            if not folder.is_dir():
                continue
            groups = sorted(
                (Path(d) for d, _, _ in os.walk(folder)), key=lambda p: len(p.parts), reverse=True
            )
            for group in groups:
                relative = group.relative_to(folder.parent).parts
                self.kill(relative)
                with contextlib.suppress(OSError):
                    group.rmdir()

    def scopes(self, prefix: str) -> set[str]:
        """Names of the top-level groups starting with `prefix` (ours and dead processes')."""
        found: set[str] = set()
        for folder in self._folders():
            with contextlib.suppress(OSError):
                found.update(e.name for e in os.scandir(folder) if e.name.startswith(prefix))
        return found

    def kill(self, parts: Sequence[str]) -> None:
        if self.version == 2:
            for folder in self._folders(*parts):
                with contextlib.suppress(OSError):
                    (folder / "cgroup.kill").write_text("1")
        for pid in self.members(parts):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def limit_files(self, limits: Limits, *, processes: int, memory: int) -> dict[str, str]:
        if self.version == 2:
            return {
                "pids.max": str(processes),
                "memory.max": str(memory),
                "memory.swap.max": "0",
                "cpu.weight": str(limits.cpu_weight),
            }
        return {
            "pids.max": str(processes),
            "memory.limit_in_bytes": str(memory),
            "memory.memsw.limit_in_bytes": str(memory),
            "cpu.shares": str(max(2, limits.cpu_weight * 1024 // 100)),
        }


# --- the sandbox -----------------------------------------------------------------------------


# Runs the operations of CgroupTree.plan, then the sandbox. Its first argument is every folder
# to make, one per line, made by a single `mkdir -p` (a process per folder cost more than all the
# rest of a start); then `set FILE VALUE` (a limit; skipped when the kernel has no such file,
# e.g. swap accounting off), `try FILE VALUE` (failure ignored), `join PROCS` (this process, and
# so all it starts). Any failure that would leave the sandbox without its limits stops it before
# it starts (exit 126). bubblewrap then starts with an empty environment (`env -i`): the
# sandbox's own gets its variables from --setenv, and nothing of this shell's reaches its PID 1.
# POSIX sh, not bash: a bash session leader on a terminal takes it as its controlling terminal,
# and the sandbox's shell could then not.
JOIN_SCRIPT = """
if [ -n "$1" ]; then
  IFS='
'
  set -f
  mkdir -p -- $1 || exit 126
  unset IFS
  set +f
fi
shift
while [ "$1" != -- ]; do
  case "$1" in
    set) if [ -e "$2" ]; then echo "$3" > "$2" || exit 126; fi; shift 3 ;;
    try) echo "$3" 2>/dev/null > "$2"; shift 3 ;;
    join) echo $$ > "$2" || exit 126; shift 2 ;;
    *) exit 126 ;;
  esac
done
shift
exec /usr/bin/env -i "$@"
"""


def script_arguments(ops: Sequence[str]) -> list[str]:
    """JOIN_SCRIPT's arguments for `ops`: the folders to make first, then the rest in order."""
    folders: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(ops):
        width = 3 if ops[index] in ("set", "try") else 2
        step = ops[index : index + width]
        if step[0] == "mkdir":
            if step[1] not in folders:
                folders.append(step[1])
        else:
            rest += step
        index += width
    return ["\n".join(folders), *rest]


class Box:
    """One sandbox's cgroup (a terminal session, a git command): made and joined by the process
    that becomes the sandbox (`ops`); inspected, killed and removed from here."""

    def __init__(self, tree: CgroupTree, parts: tuple[str, ...], ops: Sequence[str]) -> None:
        self._tree = tree
        self.parts = parts
        self.ops = tuple(ops)
        self.procs = tuple(tree.procs(parts))

    def members(self) -> set[int]:
        return self._tree.members(self.parts)

    def memory_bytes(self) -> int | None:
        name = "memory.current" if self._tree.version == 2 else "memory.usage_in_bytes"
        return self._tree.read(self.parts, name)

    def kill(self) -> None:
        self._tree.kill(self.parts)

    def remove(self) -> None:
        self._tree.remove(self.parts)


class Sandbox:
    """Builds sandboxed command lines and owns the cgroups of everything it starts."""

    def __init__(self, config: SandboxConfig, *, cgroups: CgroupTree | None = None) -> None:
        self.config = config
        self.cgroups = cgroups if cgroups is not None else CgroupTree(0, {})
        self._scope = f"stockfolio-{os.getpid()}"
        self._etc = Path(tempfile.mkdtemp(prefix="stockfolio-sandbox-etc-"))
        self._write_etc()
        self._prlimit = shutil.which("prlimit")
        self._bwrap = shutil.which("bwrap") or "bwrap"

    @classmethod
    def create(cls, config: SandboxConfig) -> Sandbox:
        cgroups = CgroupTree.discover() if config.enabled else CgroupTree(0, {})
        sandbox = cls(config, cgroups=cgroups)
        if cgroups.available:
            sandbox.sweep()
        if config.enabled:
            log.info(
                "sandbox: bubblewrap, limits by %s and rlimits (%d processes, %d MiB per box)",
                sandbox.limits_applied,
                config.session.processes,
                config.session.memory_bytes // MB,
            )
        return sandbox

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    @property
    def limits_applied(self) -> str:
        """Which mechanisms hold the limits: 'cgroup v1+rlimits', 'rlimits' or 'none'."""
        if not self.enabled:
            return "none"
        return f"{self.cgroups.kind}+rlimits" if self.cgroups.available else "rlimits"

    def close(self) -> None:
        shutil.rmtree(self._etc, ignore_errors=True)
        if self.cgroups.available:
            self.cgroups.remove_tree((self._scope,))

    def sweep(self) -> list[str]:
        """Removes the groups a process of ours left when it died without closing them."""
        swept = []
        for scope in self.cgroups.scopes("stockfolio-"):
            pid = scope.removeprefix("stockfolio-")
            if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
                self.cgroups.remove_tree((scope,))
                swept.append(scope)
        return swept

    def _write_etc(self) -> None:
        """Account files naming only the sandbox's own user: a shell prompt and `id` work, and
        the host's accounts stay unseen."""
        files = {
            "passwd": f"{SANDBOX_USER}:x:{SANDBOX_UID}:{SANDBOX_GID}::{INSIDE_HOME}:/bin/bash\n"
            "nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n",
            "group": f"{SANDBOX_USER}:x:{SANDBOX_GID}:\nnogroup:x:65534:\n",
            "hostname": "stockfolio\n",
            "hosts": "127.0.0.1 localhost stockfolio\n::1 localhost\n",
            "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
        }
        for name, text in files.items():
            (self._etc / name).write_text(text)
            (self._etc / name).chmod(0o644)
        self._etc.chmod(0o755)

    def open_box(self, owner: str, name: str) -> Box | None:
        """A cgroup for one sandbox of `owner` inside the owner's own group (None without
        cgroups)."""
        if not self.enabled or not self.cgroups.available:
            return None
        limits = self.config.session
        user = ("user-" + _SAFE_NAME.sub("_", owner))[:100]
        box = ("box-" + _SAFE_NAME.sub("_", name))[:100]
        tree = self.cgroups
        ops = tree.plan(
            (self._scope, user),
            tree.limit_files(
                limits, processes=self.config.user_processes, memory=self.config.user_memory_bytes
            ),
            join=False,  # the user's group is made and limited; each sandbox joins its own
        )
        ops += tree.plan(
            (self._scope, user, box),
            tree.limit_files(limits, processes=limits.processes, memory=limits.memory_bytes),
        )
        return Box(tree, (self._scope, user, box), ops)

    def command(
        self,
        argv: Sequence[str],
        *,
        binds: Sequence[Bind],
        cwd: Path,
        env: Mapping[str, str],
        network: bool = False,
        box: Box | None = None,
    ) -> list[str]:
        """The full command line that runs `argv` in a sandbox (or as it is when off).

        Start it with exactly `env` as its environment: bubblewrap, the sandbox's PID 1,
        keeps the environment it was given, and it is readable inside."""
        if not self.enabled:
            return list(argv)
        limits = self.config.session
        args = [
            self._bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_GID),
            "--hostname",
            "stockfolio",
            "--clearenv",
        ]
        if network:
            args.append("--share-net")
        for name, value in env.items():
            args += ["--setenv", name, value]
        args += _system_mounts()
        for name in _ETC_FILES:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        for name in ("passwd", "group", "hostname", "hosts", "nsswitch.conf"):
            args += ["--ro-bind", str(self._etc / name), f"/etc/{name}"]
        if network:
            args += ["--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf"]
        args += ["--proc", "/proc", "--dev", "/dev"]
        # Private, size-bounded temporary folders inside the sandbox (not the host's).
        args += ["--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]  # noqa: S108
        args += ["--size", str(limits.tmp_bytes), "--tmpfs", "/var/tmp"]  # noqa: S108
        for bind in binds:
            args += ["--bind" if bind.writable else "--ro-bind", str(bind.source), str(bind.target)]
        args += ["--remount-ro", "/", "--chdir", str(cwd), "--", *self._inner_limits(argv)]
        return self._with_limits(args, box)

    def _inner_limits(self, argv: Sequence[str]) -> list[str]:
        """RLIMIT_NPROC is set inside the sandbox, once its user namespace exists: the kernel
        counts a namespace's processes against the limit its creator had, at every level up,
        so a limit given to bubblewrap itself would count every sandbox of the service's uid
        together (and refuse forks once they all reach it)."""
        if self._prlimit is None:
            return list(argv)
        return [self._prlimit, f"--nproc={self.config.session.processes}", "--", *argv]

    def _with_limits(self, args: list[str], box: Box | None) -> list[str]:
        limits = self.config.session
        if self._prlimit is not None:
            args = [
                self._prlimit,
                f"--nofile={limits.open_files}",
                f"--fsize={limits.file_size_bytes}",
                "--core=0",
                # Without a memory cgroup, an address-space bound is the next best thing.
                *([] if box is not None else [f"--as={limits.memory_bytes * 4}"]),
                "--",
                *args,
            ]
        if box is not None:
            # Makes and joins the cgroups before anything runs in the sandbox: no child escapes.
            args = ["/bin/sh", "-c", JOIN_SCRIPT, "join", *script_arguments(box.ops), "--", *args]
        return args

    async def run(
        self,
        argv: Sequence[str],
        *,
        owner: str,
        binds: Sequence[Bind],
        cwd: Path,
        env: Mapping[str, str],
        network: bool = False,
        stdin: bytes | None = None,
        timeout: float,  # noqa: ASYNC109 - on expiry the whole sandbox is killed, not a wait
        host_cwd: Path | None = None,
    ) -> Completed:
        """Runs a command to completion in `owner`'s sandbox; kills the whole sandbox on timeout
        or cancellation. `cwd` is inside the sandbox; `host_cwd` is used when it is off."""
        box = self.open_box(owner, f"run-{os.urandom(6).hex()}")
        command = self.command(argv, binds=binds, cwd=cwd, env=env, network=network, box=box)
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                cwd=str(host_cwd or cwd) if not self.enabled else "/",
                env=dict(env),
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as error:
            if box is not None:
                box.remove()
            raise Unavailable(f"could not start {argv[0]}: {error.strerror}") from None
        try:
            out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
        except TimeoutError:
            await self._end(process, box)
            raise Unavailable(
                f"{Path(argv[0]).name} timed out after {timeout:g}s", reason="SANDBOX_TIMEOUT"
            ) from None
        except BaseException:
            await self._end(process, box)
            raise
        if box is not None:
            box.kill()  # anything it left behind
            box.remove()
        return Completed(process.returncode or 0, out, err)

    @staticmethod
    async def _end(process: asyncio.subprocess.Process, box: Box | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if box is not None:
            box.kill()
        with contextlib.suppress(ProcessLookupError):
            await process.wait()
        if box is not None:
            box.remove()


def _system_mounts() -> list[str]:
    """`/usr` read-only, and `/bin`, `/lib`... as the host has them (links on merged-/usr)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def inside_path(user_root: Path, host_path: Path) -> Path:
    """Where a path under the user's own folder appears inside their sandbox."""
    relative = Path(os.path.relpath(host_path, user_root))
    if relative.parts and relative.parts[0] == "..":
        raise ValueError(f"{host_path} is not under {user_root}")
    return INSIDE_HOME / relative if str(relative) != "." else INSIDE_HOME
