"""cgroups for sandboxes: each sandbox's group under its user's, under this process's own
(v1, one hierarchy per controller, or v2, one tree), made and joined by the process that becomes
the sandbox (JOIN_SCRIPT), inspected, killed and removed from here."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


class CgroupTree:
    """Child groups of this process's own cgroup: `<own>/stockfolio-<pid>-<token>/<user>/<box>`.

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
                self.empty(group.relative_to(folder.parent).parts)
                with contextlib.suppress(OSError):
                    group.rmdir()

    def empty(self, parts: Sequence[str], *, within: float = 2.0) -> None:
        """Kills the group's processes and waits (briefly) until they have left it: a sandbox's
        inner processes die just after its outer bubblewrap, and a group with a process left in
        it cannot be removed."""
        deadline = time.monotonic() + within
        while self.members(parts) and time.monotonic() < deadline:
            self.kill(parts)
            time.sleep(0.01)

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

    def limit_files(self, *, cpu_weight: int, processes: int, memory: int) -> dict[str, str]:
        if self.version == 2:
            return {
                "pids.max": str(processes),
                "memory.max": str(memory),
                "memory.swap.max": "0",
                "cpu.weight": str(cpu_weight),
            }
        return {
            "pids.max": str(processes),
            "memory.limit_in_bytes": str(memory),
            "memory.memsw.limit_in_bytes": str(memory),
            "cpu.shares": str(max(2, cpu_weight * 1024 // 100)),
        }


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

    def empty(self) -> None:
        self._tree.empty(self.parts)

    def remove(self) -> None:
        self._tree.remove(self.parts)
