"""Git on user projects, run as a subprocess that user input can never steer.

No user value reaches git as an option, remote URLs are limited to safe transports, and the
programs a repository's own config could start (hooks, fsmonitor, credential helpers, external
diff, filter drivers, upload/receive-pack overrides) are switched off on every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from services.runtime.errors import Conflict, FailedPrecondition, InvalidArgument, Unavailable
from services.workspace.paths import resolve_inside

_SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "protocol.ext.allow=never",
    "credential.helper=",
    "core.askPass=",
    "commit.gpgsign=false",
    "diff.external=",
)
_REMOTE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SCP_LIKE = re.compile(r"(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9._-]+):(?P<path>.+)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_LOG_LIMIT = 1000


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
class GitResult:
    returncode: int
    stdout: str
    stderr: str


def _no_option(field_name: str, value: str) -> str:
    if value.startswith("-"):
        raise InvalidArgument.field(field_name, "must not start with '-'")
    if "\x00" in value:
        raise InvalidArgument.field(field_name, "must not contain NUL bytes")
    return value


def _url_error(description: str) -> InvalidArgument:
    return InvalidArgument.field("url", description)


def validate_remote_url(url: str, allowed_file_roots: Sequence[Path]) -> str:
    """`url` if it is https://, ssh://, scp-like git@host:path or file:// inside a root."""
    _no_option("url", url)
    if _CONTROL.search(url) or " " in url:
        raise _url_error("must not contain spaces or control characters")
    if "::" in url.split("/", 1)[0] or "::" in url[:10]:
        raise _url_error("transport helpers (such as ext::) are not allowed")
    if "://" not in url:
        return _validate_scp_like(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("https", "ssh"):
        if not parts.hostname or parts.hostname.startswith("-"):
            raise _url_error("needs a host name")
        if parts.password is not None or (scheme == "https" and parts.username is not None):
            raise _url_error("must not carry credentials")
        return url
    if scheme == "file":
        return _validate_file_url(url, allowed_file_roots)
    raise _url_error("only https://, ssh://, git@host:path and file:// URLs are allowed")


def _validate_scp_like(url: str) -> str:
    matched = _SCP_LIKE.fullmatch(url)
    if matched is None or matched["host"].startswith("-") or "/" in url.split(":", 1)[0]:
        raise _url_error("only https://, ssh://, git@host:path and file:// URLs are allowed")
    if matched["path"].startswith("-"):
        raise _url_error("path must not start with '-'")
    return url


def _validate_file_url(url: str, allowed_file_roots: Sequence[Path]) -> str:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise _url_error("file:// URLs must name a local path")
    target = os.path.realpath(unquote(parts.path))
    for root in allowed_file_roots:
        real_root = os.path.realpath(root)
        if os.path.commonpath([real_root, target]) == real_root:
            return url
    raise _url_error("file:// URLs must lie inside the configured roots")


def _parse_status(output: str) -> Status:
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


def _neutral_filters(names: str) -> tuple[str, ...]:
    """Config that empties every filter driver a repository defines: they run programs."""
    overrides: list[str] = []
    for key in filter(None, names.split("\x00")):
        driver = key.removeprefix("filter.").rpartition(".")[0]
        if not driver or "=" in driver or _CONTROL.search(driver):
            raise FailedPrecondition(
                "the repository config names a filter that cannot be switched off",
                reason="GIT_UNSAFE_CONFIG",
            )
        for part in ("clean", "smudge", "process"):
            overrides.append(f"filter.{driver}.{part}=")
        overrides.append(f"filter.{driver}.required=false")
    return tuple(dict.fromkeys(overrides))


class GitRunner:
    """Runs git for the workspace service; owns a scratch HOME that `close()` removes."""

    def __init__(
        self,
        *,
        timeout: float,
        allowed_file_roots: Sequence[Path] = (),
        home: Path | None = None,
    ) -> None:
        self.timeout = timeout
        self.allowed_file_roots = tuple(allowed_file_roots)
        self._owns_home = home is None
        self.home = home if home is not None else Path(tempfile.mkdtemp(prefix="git-home-"))
        self._env = self._safe_environment()

    def close(self) -> None:
        if self._owns_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def _safe_environment(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home),
            "LANG": "C",
            "LC_ALL": "C",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ALLOW_PROTOCOL": "https:ssh:file",
            "GIT_LITERAL_PATHSPECS": "1",
            "GIT_ASKPASS": "/bin/false",
            "GIT_EDITOR": "true",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        }

    async def run(
        self,
        cwd: Path,
        *args: str,
        config: Sequence[str] = (),
        check: bool = True,
        stdin: bytes | None = None,
    ) -> GitResult:
        """Run `git <args>` in `cwd` with the safe config; kill its process group on timeout."""
        filters = await self._execute(
            cwd, ("config", "--null", "--name-only", "--get-regexp", r"^filter\."), (), None
        )
        neutral = _neutral_filters(filters.stdout) if filters.returncode == 0 else ()
        result = await self._execute(cwd, args, (*neutral, *config), stdin)
        if check and result.returncode != 0:
            raise FailedPrecondition(
                f"git {args[0]} failed: {result.stderr.strip()}", reason="GIT_FAILED"
            )
        return result

    async def _execute(
        self, cwd: Path, args: Sequence[str], config: Sequence[str], stdin: bytes | None
    ) -> GitResult:
        argv = ["--no-pager"]
        for item in (*_SAFE_CONFIG, *config):
            argv += ["-c", item]
        process = await asyncio.create_subprocess_exec(
            "git",
            *argv,
            *args,
            cwd=cwd,
            env=self._env,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(stdin), self.timeout)
        except TimeoutError:
            await self._kill(process)
            raise Unavailable(
                f"git {args[0]} timed out after {self.timeout:g}s", reason="GIT_TIMEOUT"
            ) from None
        except BaseException:
            await self._kill(process)
            raise
        return GitResult(process.returncode or 0, out.decode(errors="replace"), err.decode())

    @staticmethod
    async def _kill(process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            await process.wait()

    async def check_branch_name(self, name: str) -> str:
        _no_option("branch", name)
        result = await self.run(self.home, "check-ref-format", "--branch", name, check=False)
        if result.returncode != 0 or "@{" in name:
            raise InvalidArgument.field("branch", f"{name!r} is not a valid branch name")
        return name

    def _repo_path(self, repo: Path, path: str) -> str:
        _no_option("path", path)
        resolve_inside(repo, path)
        return path

    async def init(self, repo: Path) -> None:
        await asyncio.to_thread(repo.mkdir, parents=True, exist_ok=True)
        await self.run(repo, "init", "--quiet", "--initial-branch=main")

    async def status(self, repo: Path) -> Status:
        result = await self.run(
            repo, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all"
        )
        return _parse_status(result.stdout)

    async def log(self, repo: Path, *, limit: int = 50) -> list[Commit]:
        if not 1 <= limit <= MAX_LOG_LIMIT:
            raise InvalidArgument.field("limit", f"must be between 1 and {MAX_LOG_LIMIT}")
        head = await self.run(repo, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
        if head.returncode != 0:
            return []
        result = await self.run(
            repo, "log", f"--max-count={limit}", "--format=%H%x1f%an%x1f%ae%x1f%aI%x1f%s%x1e"
        )
        commits = []
        for record in result.stdout.split("\x1e"):
            if record.strip():
                sha, name, email, when, subject = record.strip("\n").split("\x1f")
                commits.append(Commit(sha, name, email, datetime.fromisoformat(when), subject))
        return commits

    async def diff(self, repo: Path, *, staged: bool = False, path: str | None = None) -> str:
        args = ["diff", "--no-color", "--no-ext-diff", "--no-textconv"]
        if staged:
            args.append("--cached")
        args.append("--")
        if path is not None:
            args.append(self._repo_path(repo, path))
        return (await self.run(repo, *args)).stdout

    async def branches(self, repo: Path) -> list[Branch]:
        result = await self.run(
            repo,
            "for-each-ref",
            "--format=%(refname:short)%1f%(HEAD)%1f%(objectname)",
            "refs/heads/",
        )
        found = []
        for line in result.stdout.splitlines():
            name, head, sha = line.split("\x1f")
            found.append(Branch(name, head == "*", sha))
        return found

    async def create_branch(self, repo: Path, name: str) -> None:
        await self.check_branch_name(name)
        await self.run(repo, "branch", "--no-track", "--", name)

    async def switch_branch(self, repo: Path, name: str) -> None:
        await self.check_branch_name(name)
        await self.run(repo, "switch", "--no-guess", "--", name)

    async def commit(
        self,
        repo: Path,
        message: str,
        *,
        author_name: str,
        author_email: str,
        paths: Sequence[str] | None = None,
    ) -> str:
        """Stage `paths` (everything when None) and commit; returns the new commit's sha."""
        if not message.strip() or "\x00" in message:
            raise InvalidArgument.field("message", "must not be empty or contain NUL bytes")
        for name, value in (("author_name", author_name), ("author_email", author_email)):
            if not value.strip() or _CONTROL.search(value) or "<" in value or ">" in value:
                raise InvalidArgument.field(name, "must be non-empty, without control characters")
        pathspecs = [self._repo_path(repo, p) for p in paths] if paths is not None else []
        await self.run(repo, "add", "--all", "--", *pathspecs)
        staged = await self.run(repo, "diff", "--cached", "--quiet", check=False)
        if staged.returncode == 0:
            raise FailedPrecondition("nothing to commit", reason="GIT_NOTHING_TO_COMMIT")
        identity = (f"user.name={author_name}", f"user.email={author_email}")
        await self.run(
            repo, "commit", "--quiet", "--no-verify", "--file=-", config=identity,
            stdin=message.encode(),
        )  # fmt: skip
        return (await self.run(repo, "rev-parse", "HEAD")).stdout.strip()

    async def add_remote(self, repo: Path, name: str, url: str) -> None:
        self._check_remote_name(name)
        validate_remote_url(url, self.allowed_file_roots)
        await self.run(repo, "remote", "add", "--", name, url)

    async def remotes(self, repo: Path) -> list[Remote]:
        result = await self.run(repo, "remote", "-v")
        found = []
        for line in result.stdout.splitlines():
            name, rest = line.split("\t", 1)
            url, kind = rest.rsplit(" ", 1)
            if kind == "(fetch)":
                found.append(Remote(name, url))
        return found

    async def push(self, repo: Path, *, remote: str = "origin", branch: str | None = None) -> str:
        """Push `branch` (the current one when None) and track it; returns the branch pushed.
        A remote that has moved on is a Conflict (pull first); nothing is forced."""
        branch = await self._network_target(repo, remote, branch)
        ref = f"refs/heads/{branch}"
        result = await self.run(
            repo, "push", "--porcelain", "--set-upstream", "--", remote, f"{ref}:{ref}",
            config=self._transport_config(remote), check=False,
        )  # fmt: skip
        if result.returncode == 0:
            return branch
        report = f"{result.stdout.strip()} {result.stderr.strip()}".strip()
        if "[rejected]" in report or "non-fast-forward" in report or "fetch first" in report:
            raise Conflict(
                f"conflict: the remote has commits this branch lacks; pull first ({report})",
                reason="GIT_CONFLICT",
            )
        raise FailedPrecondition(f"git push failed: {report}", reason="GIT_FAILED")

    async def pull(self, repo: Path, *, remote: str = "origin", branch: str | None = None) -> None:
        """Fast-forward only; anything else is refused as a conflict and changes nothing."""
        branch = await self._network_target(repo, remote, branch)
        result = await self.run(
            repo, "pull", "--ff-only", "--no-rebase", "--quiet", "--", remote, branch,
            config=self._transport_config(remote), check=False,
        )  # fmt: skip
        if result.returncode == 0:
            return
        stderr = result.stderr.strip()
        if "fast-forward" in stderr or "overwritten" in stderr or "diverg" in stderr:
            raise Conflict(f"conflict: {stderr}", reason="GIT_CONFLICT")
        raise FailedPrecondition(f"git pull failed: {stderr}", reason="GIT_FAILED")

    @staticmethod
    def _check_remote_name(name: str) -> str:
        _no_option("remote", name)
        if not _REMOTE_NAME.fullmatch(name) or ".." in name:
            raise InvalidArgument.field("remote", f"{name!r} is not a valid remote name")
        return name

    @staticmethod
    def _transport_config(remote: str) -> tuple[str, ...]:
        # A repository's config could name any program as its upload/receive pack, and a
        # file:// remote's own hooks would run in receive-pack: both are pinned here.
        safe = "git -c core.hooksPath=/dev/null -c core.fsmonitor=false"
        return (
            f"remote.{remote}.uploadpack={safe} upload-pack",
            f"remote.{remote}.receivepack={safe} receive-pack",
        )

    async def _network_target(self, repo: Path, remote: str, branch: str | None) -> str:
        self._check_remote_name(remote)
        known = {r.name: r.url for r in await self.remotes(repo)}
        if remote not in known:
            raise FailedPrecondition(f"no remote named {remote!r}", reason="GIT_NO_REMOTE")
        # The URL is checked again: the repository's config may have changed since it was added.
        validate_remote_url(known[remote], self.allowed_file_roots)
        pushurl = await self.run(
            repo, "config", "--get-all", f"remote.{remote}.pushurl", check=False
        )
        for url in pushurl.stdout.split():
            validate_remote_url(url, self.allowed_file_roots)
        if branch is None:
            branch = (await self.status(repo)).branch
            if branch is None:
                raise FailedPrecondition("HEAD is detached", reason="GIT_DETACHED")
        return await self.check_branch_name(branch)


__all__ = [
    "Branch",
    "Commit",
    "FileChange",
    "GitResult",
    "GitRunner",
    "Remote",
    "Status",
    "validate_remote_url",
]
