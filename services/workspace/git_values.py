"""What git answers the workspace with, as plain values (git.py runs it), and its status read
from `git status --porcelain=v2 -z`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class FileChange:
    path: str
    code: str
    original_path: str | None = None


@dataclass(frozen=True)
class Status:
    branch: str | None
    commit: str | None
    upstream: str | None
    ahead: int
    behind: int
    staged: list[FileChange] = field(default_factory=list)
    unstaged: list[FileChange] = field(default_factory=list)
    untracked: list[str] = field(default_factory=list)
    conflicted: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Commit:
    sha: str
    author_name: str
    author_email: str
    authored_at: datetime
    subject: str


@dataclass(frozen=True)
class Branch:
    name: str
    current: bool
    commit: str


@dataclass(frozen=True)
class Remote:
    name: str
    url: str


@dataclass(frozen=True)
class Pushed:
    branch: str
    remote: str

    @property
    def summary(self) -> str:
        return f"pushed {self.branch} to {self.remote}"


@dataclass(frozen=True)
class Pulled:
    before: str | None  # HEAD's commit before the pull (None: no commit yet)
    commit: str  # and after it ("" while there is none)

    @property
    def summary(self) -> str:
        if self.commit == self.before:
            return "already up to date"
        return f"fast-forwarded to {self.commit[:12]}"


@dataclass(frozen=True)
class GitResult:
    returncode: int
    stdout: str
    stderr: str


def parse_status(output: str) -> Status:
    branch: str | None = None
    commit: str | None = None
    upstream: str | None = None
    ahead = behind = 0
    staged: list[FileChange] = []
    unstaged: list[FileChange] = []
    untracked: list[str] = []
    conflicted: list[str] = []
    entries = iter(output.split("\x00"))
    for entry in entries:
        if entry.startswith("# branch.oid "):
            oid = entry.removeprefix("# branch.oid ")
            commit = None if oid == "(initial)" else oid
        elif entry.startswith("# branch.head "):
            head = entry.removeprefix("# branch.head ")
            branch = None if head == "(detached)" else head
        elif entry.startswith("# branch.upstream "):
            upstream = entry.removeprefix("# branch.upstream ")
        elif entry.startswith("# branch.ab "):
            plus, minus = entry.removeprefix("# branch.ab ").split()
            ahead, behind = int(plus), -int(minus)
        elif entry.startswith(("1 ", "2 ")):
            fields = entry.split(" ", 9 if entry[0] == "2" else 8)
            xy, path = fields[1], fields[-1]
            original = next(entries) if entry[0] == "2" else None
            if xy[0] != ".":
                staged.append(FileChange(path, xy[0], original))
            if xy[1] != ".":
                unstaged.append(FileChange(path, xy[1], original))
        elif entry.startswith("u "):
            conflicted.append(entry.split(" ", 10)[-1])
        elif entry.startswith("? "):
            untracked.append(entry[2:])
    return Status(branch, commit, upstream, ahead, behind, staged, unstaged, untracked, conflicted)
