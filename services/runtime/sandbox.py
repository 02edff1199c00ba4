"""The sandbox every process run on behalf of a user starts in: bubblewrap, cgroups, rlimits.

A shell or a git command for user U sees its own PID, IPC, UTS, cgroup, user and network
namespaces; a read-only system (`/usr` and the few `/etc` files a shell needs); a private
read-only `/dev`; private size-bounded `/tmp`, `/var/tmp` and `/dev/shm`; and, writable, only
the folders it is given (U's own workspace). It runs as
an unprivileged uid with an environment built from an allowlist (`--setenv`); bubblewrap itself,
a shell's sandbox's PID 1 whose `/proc/1/environ` is readable inside, starts with no environment
(or only that allowlist, without cgroups); a command's (`Sandbox.run`) PID 1 is the command.
Limits come from cgroups when this process may create child groups (v1 or v2) and from rlimits
(`prlimit`) always. Killing the outer bubblewrap ends
the sandbox's PID namespace, so every process in it dies, `setsid` and double-forked ones
included. A command run to completion (`Sandbox.run`) returns, or raises, only once every
process it started has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.runtime import procfs
from services.runtime.cgroups import JOIN_SCRIPT, Box, CgroupTree, script_arguments
from services.runtime.config import ConfigError, Env
from services.runtime.errors import FailedPrecondition, Unavailable

log = logging.getLogger(__name__)

KB = 1024
MB = 1024 * KB
GB = 1024 * MB
# The most a command run to completion may print on stdout, and on stderr: no gRPC message of
# ours is larger (services/runtime/server.py), so no answer made of more could be sent anyway.
MAX_OUTPUT = 32 * MB
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
# The /etc files a shell and git need; nothing that names the host's users or services. Of
# /etc/ssl, the certificates and openssl's config alone: the sandbox's uid is the service's
# outside, so a service run as root showed every shell the host's ssl/private, keys included.
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
    "ssl/certs",
    "ssl/openssl.cnf",
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
    """A host folder made visible inside the sandbox at `target`. With `fd`, the folder is that
    open descriptor (bubblewrap's --bind-fd), not whatever `source` names when the sandbox
    starts: a folder in a user's hands, checked once opened, cannot be swapped for a link."""

    source: Path
    target: Path
    writable: bool = True
    fd: int | None = None


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes


# --- the sandbox -----------------------------------------------------------------------------


class Sandbox:
    """Builds sandboxed command lines and owns the cgroups of everything it starts."""

    def __init__(self, config: SandboxConfig, *, cgroups: CgroupTree | None = None) -> None:
        self.config = config
        self.cgroups = cgroups if cgroups is not None else CgroupTree(0, {})
        # This sandbox's own: two in one process (services run together in tests) must not
        # share one, or closing one would kill the other's boxes.
        self._scope = f"stockfolio-{os.getpid()}-{secrets.token_hex(4)}"
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
            pid = scope.removeprefix("stockfolio-").split("-", 1)[0]  # stockfolio-<pid>-<token>
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
                cpu_weight=limits.cpu_weight,
                processes=self.config.user_processes,
                memory=self.config.user_memory_bytes,
            ),
            join=False,  # the user's group is made and limited; each sandbox joins its own
        )
        ops += tree.plan(
            (self._scope, user, box),
            tree.limit_files(
                cpu_weight=limits.cpu_weight, processes=limits.processes, memory=limits.memory_bytes
            ),
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
        as_pid_1: bool = False,
    ) -> list[str]:
        """The full command line that runs `argv` in a sandbox (or as it is when off).

        Start it with exactly `env` as its environment: bubblewrap, the sandbox's PID 1,
        keeps the environment it was given, and it is readable inside. With `as_pid_1`, `argv`
        is the sandbox's PID 1 itself: the outer bubblewrap then exits only once it has ended,
        which the kernel lets happen only after every other process of the sandbox's PID
        namespace (bubblewrap's own PID 1 reports its child's end at once, and the rest die
        after the outer bubblewrap, when its --die-with-parent signal reaches that PID 1)."""
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
            *(["--as-pid-1"] if as_pid_1 else []),
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
        # Private, size-bounded temporary folders inside the sandbox (not the host's). /dev is a
        # tmpfs of bubblewrap's too, of half the host's memory (--size cannot bound it): its
        # /dev/shm gets a bounded tmpfs of its own and /dev itself is made read-only below, or
        # without a memory cgroup a shell could keep gigabytes of the host's memory in files.
        for folder in ("/tmp", "/var/tmp", "/dev/shm"):  # noqa: S108
            args += ["--size", str(limits.tmp_bytes), "--tmpfs", folder]
        for bind in binds:
            option = "--bind" if bind.writable else "--ro-bind"
            if bind.fd is not None:
                args += [f"{option}-fd", str(bind.fd), str(bind.target)]
            else:
                args += [option, str(bind.source), str(bind.target)]
        args += ["--remount-ro", "/dev", "--remount-ro", "/"]
        args += ["--chdir", str(cwd), "--", *self._inner_limits(argv)]
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
        max_output: int = MAX_OUTPUT,
    ) -> Completed:
        """Runs a command to completion in `owner`'s sandbox; kills the whole sandbox on timeout
        or cancellation. `cwd` is inside the sandbox; `host_cwd` is used when it is off.
        Returns, or raises, once every process of the sandbox has ended: a background child
        of the command (`git gc --auto` detached) dies with it and writes nothing after.

        What it prints is kept in this process's memory, outside every limit of the sandbox:
        past `max_output` bytes on stdout or stderr the sandbox is killed and the call refused
        (OUTPUT_TOO_LARGE), or a user's files (a diff of a file as large as the sandbox lets
        them write) would take this process's memory, every user's service with it.

        A sandbox that bubblewrap could not set up for want of a process (the kernel's EAGAIN:
        a pids limit reached for a moment under load) ran nothing, so it is started again after
        a pause; still refused after that, the answer is 503, never the command's failure."""
        fds = [bind.fd for bind in binds if bind.fd is not None and self.enabled]
        for pause in (*_BUSY_PAUSES, None):
            box = self.open_box(owner, f"run-{os.urandom(6).hex()}")
            command = self.command(
                argv, binds=binds, cwd=cwd, env=env, network=network, box=box, as_pid_1=True
            )
            done = await self._complete(
                Path(argv[0]).name,
                command,
                box,
                cwd=str(host_cwd or cwd) if not self.enabled else "/",
                env=env,
                stdin=stdin,
                timeout=timeout,
                fds=fds,
                max_output=max_output,
            )
            if not (self.enabled and _setup_refused(done)):
                return done
            log.warning("sandbox: %s", done.stderr.decode(errors="replace").strip())
            if pause is None:
                break
            await asyncio.sleep(pause)
        raise Unavailable(
            "the sandbox could not start: the machine is out of processes for now; try again",
            reason="SANDBOX_BUSY",
        )

    async def _complete(
        self,
        name: str,
        command: Sequence[str],
        box: Box | None,
        *,
        cwd: str,
        env: Mapping[str, str],
        stdin: bytes | None,
        timeout: float,  # noqa: ASYNC109 - see run
        fds: Sequence[int],
        max_output: int,
    ) -> Completed:
        """One sandbox's process, started and waited for; the sandbox killed if it outlives
        `timeout` or the wait is cancelled."""
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                cwd=cwd,
                env=dict(env),
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                pass_fds=fds,
            )
        except OSError as error:
            if box is not None:
                box.remove()
            raise Unavailable(f"could not start {name}: {error.strerror}") from None
        try:
            out, err = await asyncio.wait_for(_talk(process, stdin, max_output), timeout)
        except TimeoutError:
            await self._end(process, box)
            raise Unavailable(
                f"{name} timed out after {timeout:g}s", reason="SANDBOX_TIMEOUT"
            ) from None
        except _OutputTooLarge:
            await self._end(process, box)
            raise FailedPrecondition(
                f"{name} printed more than {max_output // MB} MiB; ask for less",
                reason="OUTPUT_TOO_LARGE",
            ) from None
        except BaseException:
            await self._end(process, box)
            raise
        if box is not None:
            await asyncio.to_thread(_clear, box)  # anything it left behind
        return Completed(process.returncode or 0, out, err)

    async def _end(self, process: asyncio.subprocess.Process, box: Box | None) -> None:
        """Kills the sandbox and returns once everything in it has ended.

        Its PID 1 (the outer bubblewrap's child) is killed first, and bubblewrap, which waits
        for it, exits once the kernel has ended every other process of its PID namespace; then
        the outer bubblewrap's group and the box. Killed first, bubblewrap exited at once while
        the rest still ran: they died only when its --die-with-parent signal reached the
        orphaned PID 1, and without cgroups nothing waited for that. Bounded: a process stuck
        in the kernel (uninterruptible I/O) must not hang the caller."""
        # Its pid is ours, not a reused one, until it is reaped (when `returncode` is set).
        try:
            if (
                self.enabled
                and process.returncode is None
                and await asyncio.to_thread(_kill_child, process.pid)
            ):
                try:
                    await asyncio.wait_for(process.wait(), _END_WAIT)
                except TimeoutError:
                    log.warning("sandbox: its processes outlived %gs after SIGKILL", _END_WAIT)
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            if box is not None:
                box.kill()
        with contextlib.suppress(ProcessLookupError):
            await process.wait()
        if box is not None:
            await asyncio.to_thread(_clear, box)


_READ_CHUNK = 64 * KB


class _OutputTooLarge(Exception):
    """A command printed more than it may."""


async def _talk(
    process: asyncio.subprocess.Process, stdin: bytes | None, limit: int
) -> tuple[bytes, bytes]:
    """`communicate`, bounded: `stdin` written, stdout and stderr read until the process exits;
    _OutputTooLarge as soon as either holds more than `limit` bytes."""
    assert process.stdout is not None and process.stderr is not None
    out = asyncio.ensure_future(_read_at_most(process.stdout, limit))
    err = asyncio.ensure_future(_read_at_most(process.stderr, limit))
    fed = asyncio.ensure_future(_feed(process, stdin))
    try:
        await asyncio.gather(out, err, fed)
    finally:
        for task in (out, err, fed):  # the others, when one failed
            task.cancel()
    await process.wait()
    return out.result(), err.result()


async def _read_at_most(stream: asyncio.StreamReader, limit: int) -> bytes:
    data = bytearray()
    while chunk := await stream.read(_READ_CHUNK):
        data += chunk
        if len(data) > limit:
            raise _OutputTooLarge
    return bytes(data)


async def _feed(process: asyncio.subprocess.Process, data: bytes | None) -> None:
    """Writes `data` to the process's stdin and closes it; a process that exits without reading
    it all is no error (as `communicate` has it). Nothing without `data` (stdin is /dev/null)."""
    if data is None or process.stdin is None:
        return
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(data)
        await process.stdin.drain()
    process.stdin.close()


# How long a killed sandbox's processes may take to end before its close goes on without them.
_END_WAIT = 10.0
# Pauses before the second and third tries of a sandbox bubblewrap could not set up.
_BUSY_PAUSES = (0.05, 0.25)
# bubblewrap's own last words when a clone or fork for the sandbox failed with EAGAIN ("Creating
# new namespace failed", "Can't fork"): the whole of its stderr, printed before any command ran.
_SETUP_REFUSED = re.compile(rb"bwrap: [^\n]*: Resource temporarily unavailable\n?")


def _setup_refused(done: Completed) -> bool:
    return done.returncode == 1 and _SETUP_REFUSED.fullmatch(done.stderr) is not None


def _clear(box: Box) -> None:
    box.empty()
    box.remove()


def _kill_child(parent: int) -> bool:
    """SIGKILLs the children of `parent` (the outer bubblewrap's one: the sandbox's PID 1),
    each held by a pidfd and checked to be `parent`'s child still, so that a pid reused
    meanwhile is never signalled. Whether one was killed."""
    killed = False
    for pid in procfs.children(parent):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue  # gone meanwhile
        try:
            read = procfs.read_process(pid)
            if read is not None and read[1].ppid == parent:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                killed = True
        except OSError:
            pass  # ended meanwhile
        finally:
            os.close(pidfd)
    return killed


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
