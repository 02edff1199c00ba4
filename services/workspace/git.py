"""Git on user projects, run inside the user's sandbox where user input can never steer it.

No user value reaches git as an option; remote URLs are limited to safe transports and public
addresses (services/workspace/remotes.py); and the programs a repository's own config could
start (hooks, fsmonitor, pager, editors, signature verifiers, credential helpers, ssh, external
diff and textconv, filter and merge drivers, upload/receive-pack overrides, alternate-refs
commands, submodules) are pinned off on every call (git_pins.py). All of that is defence in
depth: every git process starts through `GitRunner._execute`, in the owner's bubblewrap sandbox
(see services/runtime/sandbox.py), which sees only the repository, the scratch HOME (read-only)
and, for a push or a pull to a file:// remote, the one folder of the file:// roots it lies in:
the owner's own (writable for a push only), or the shared one (read-only); it has network only
for a push or a pull to a network remote, and only after the remote's host was resolved and
checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from services.runtime.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from services.runtime.sandbox import Bind, Sandbox, SandboxConfig
from services.workspace.files import ProjectCheck, check_project_there
from services.workspace.git_pins import DRIVER_KEYS, SAFE_CONFIG, SAFE_PACK, neutral_drivers
from services.workspace.git_values import (
    Branch,
    Commit,
    GitResult,
    Pulled,
    Pushed,
    Remote,
    Status,
    parse_status,
)
from services.workspace.locks import LOCK_FOLDER, VolumeLocks, project_place
from services.workspace.paths import CONTROL_CHARACTERS, open_project_folder, resolve_inside
from services.workspace.remotes import (
    DEFAULT_REMOTE,
    Checked,
    Destination,
    check_destination,
    is_address_literal,
    open_area,
)
from services.workspace.remotes import validate_remote_url as _validate_remote_url

# Whose sandbox (and folder of the file:// roots) a git call outside every user's folder runs
# as: a project being built in the staging area, a name check, tools and tests with no root.
SERVICE_OWNER = "workspace"
_REMOTE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_PATH = "/usr/local/bin:/usr/bin:/bin"
MAX_LOG_LIMIT = 1000


def _failed(command: str, result: GitResult) -> FailedPrecondition:
    return FailedPrecondition(f"git {command} failed: {result.stderr.strip()}", reason="GIT_FAILED")


def _no_option(field_name: str, value: str) -> str:
    if value.startswith("-"):
        raise InvalidArgument.field(field_name, "must not start with '-'")
    if "\x00" in value:
        raise InvalidArgument.field(field_name, "must not contain NUL bytes")
    return value


def validate_remote_url(url: str, allowed_file_roots: Sequence[Path], *, owner: str) -> str:
    """`url` if it is https://, ssh://, scp-like git@host:path or file:// inside `owner`'s
    folder of a root (see services/workspace/remotes.py)."""
    return _validate_remote_url(url, allowed_file_roots, owner=owner).url


# The repositories whose writer lock this task holds (GitRunner.exclusive).
_EXCLUSIVE: contextvars.ContextVar[frozenset[Path]] = contextvars.ContextVar(
    "git_exclusive", default=frozenset()
)
# Commands that only read: they run beside a writer, with no optional locks.
_READS = frozenset({"status", "log", "diff", "rev-parse", "show", "ls-files", "cat-file"})
# What a git killed midway may leave in .git, each refusing the next git that needs it.
_LOCK_FILES = ("index.lock", "HEAD.lock", "config.lock", "packed-refs.lock", "ORIG_HEAD.lock")


def _drop_locks_since(repository: int, started: float) -> None:
    """Remove the lock files under `repository` (an open descriptor of the checked project
    folder, closed here: a `.git` swapped for a link is not followed) made since `started`:
    the killed git's, not one a git in the user's own terminal holds from before."""
    try:
        git_dir = os.open(".git", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=repository)
    except OSError:
        return
    finally:
        os.close(repository)
    try:
        for name in _LOCK_FILES:
            with contextlib.suppress(OSError):
                if os.stat(name, dir_fd=git_dir, follow_symlinks=False).st_mtime >= started - 1:
                    os.unlink(name, dir_fd=git_dir)
    finally:
        os.close(git_dir)


@dataclass(frozen=True)
class _Transfer:
    """What a push or pull to one checked destination adds to the git call: the network for a
    remote reached over it, the folder of the file:// roots a local one lies in (written to by
    a push only; opened and bound by its descriptor when the git process starts)."""

    config: tuple[str, ...]
    options: tuple[str, ...]
    env: Mapping[str, str]
    network: bool
    binds: tuple[Bind, ...]


async def _opened(repo: Path) -> int:
    """The project's folder, opened (its descriptor is what the sandbox binds); a folder gone
    (its project renamed or deleted through another replica since it was looked up) is the
    project not found, for the caller to look up again, not an internal error."""
    try:
        return await asyncio.to_thread(open_project_folder, repo)
    except FileNotFoundError:
        raise NotFound(
            f"project folder {repo.name!r} is gone (renamed or deleted); look it up again",
            reason="PROJECT_NOT_FOUND",
        ) from None


async def _areas_opened(binds: Sequence[Bind], opened: list[int]) -> list[Bind]:
    """`binds` of folders of the file:// roots, each opened (`open_area`, its descriptor added
    to `opened` for the caller to close) and bound by its descriptor: a link swapped in after
    the URL's check is not followed. A folder missing is left out."""
    found = []
    for bind in binds:
        fd = await asyncio.to_thread(open_area, bind.source)
        if fd is not None:
            opened.append(fd)
            found.append(Bind(bind.source, bind.target, writable=bind.writable, fd=fd))
    return found


class GitRunner:
    """Runs git for the workspace service, each call in the repository owner's sandbox; owns a
    scratch HOME (and, when it made it, a development sandbox) that `close()` removes."""

    def __init__(
        self,
        *,
        timeout: float,
        allowed_file_roots: Sequence[Path] = (),
        home: Path | None = None,
        sandbox: Sandbox | None = None,
        workspace_root: Path | None = None,
        allowed_hosts: Collection[str] = (),
    ) -> None:
        self.timeout = timeout
        self.allowed_file_roots = tuple(allowed_file_roots)
        self.allowed_hosts = frozenset(h.strip().lower() for h in allowed_hosts if h.strip())
        self.workspace_root = workspace_root
        self._owns_home = home is None
        self.home = home if home is not None else Path(tempfile.mkdtemp(prefix="git-home-"))
        self._owns_sandbox = sandbox is None
        # Without a sandbox given (unit tests, tools), git runs as the service, unsandboxed.
        self.sandbox = sandbox if sandbox is not None else Sandbox(SandboxConfig(mode="off"))
        self._env = self._safe_environment()
        # One git that may write at a time per repository, across every replica sharing the
        # volume (its lock files lie beside the users' folders; without a workspace root, in
        # this process only): two would fight over .git/index.lock (a commit failed while the
        # page polled the status; commits through two replicas failed on each other's).
        lock_folder = workspace_root / LOCK_FOLDER if workspace_root is not None else None
        self._writers = VolumeLocks(lock_folder)

    @contextlib.asynccontextmanager
    async def exclusive(
        self, repo: Path, *, check: ProjectCheck | None = None
    ) -> AsyncIterator[None]:
        """The repository's writer lock for a sequence of git commands that must not be split
        by another of ours, on any replica (a commit and its undo, relative to HEAD); the
        commands inside take it again freely (it is held by this task's context).

        Its project's place is shared with it (`project_place`), as a file write shares it:
        a rename or a delete of the project waits for the sequence, never moves the folder
        between two of its commands, and the sequence waits for them. With `check` (the
        caller's, as a file write's: the folder is still its project's), once the locks are
        held the folder must be there and `check` pass, else ProjectMoved: a rename or a
        delete came first, and the caller follows the project to where it is now
        (ProjectWrites) and runs the whole sequence there."""
        held = _EXCLUSIVE.get()
        if repo in held:
            yield
            return
        # Keyed apart from the files' locks (absolute paths) on the same lock files; both in
        # one step (one order for every holder: a stripe both keys share is taken once).
        async with self._writers.hold(f"git:{repo}", shared=[project_place(repo)]):
            if check is not None:
                await asyncio.to_thread(check_project_there, repo)
                await check()
            token = _EXCLUSIVE.set(held | {repo})
            try:
                yield
            finally:
                _EXCLUSIVE.reset(token)

    def close(self) -> None:
        if self._owns_home:
            shutil.rmtree(self.home, ignore_errors=True)
        if self._owns_sandbox:
            self.sandbox.close()

    def _safe_environment(self) -> dict[str, str]:
        return {
            "PATH": _PATH,
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
            "GIT_SEQUENCE_EDITOR": "true",
            "GIT_PAGER": "cat",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        }

    def _owner(self, cwd: Path) -> str:
        """Whose sandbox a call runs in: the first folder under the workspace root (a user's);
        anything else (a project being built in the staging area, a name check) runs in the
        service's own box."""
        if self.workspace_root is not None:
            relative = Path(os.path.relpath(cwd, self.workspace_root)).parts
            if relative and relative[0] not in ("..", ".") and not relative[0].startswith("."):
                return relative[0]
        return SERVICE_OWNER

    def scrub(self, text: str, repo: Path) -> str:
        """`text` (git's stderr) with no host path left: the repository becomes `<project>`,
        the workspace root `<workspace>`, the file:// roots `<remotes>`, HOME `<git-home>`."""
        names = [(repo, "<project>"), (self.home, "<git-home>")]
        names += [(root, "<remotes>") for root in self.allowed_file_roots]
        if self.workspace_root is not None:
            names.append((self.workspace_root, "<workspace>"))
        replacements: dict[str, str] = {}
        for path, name in names:
            for form in (str(path), os.path.realpath(path)):
                replacements.setdefault(form, name)
        for form in sorted(replacements, key=len, reverse=True):
            text = text.replace(form, replacements[form])
        return text

    async def run(
        self,
        cwd: Path,
        *args: str,
        config: Sequence[str] = (),
        check: bool = True,
        stdin: bytes | None = None,
    ) -> GitResult:
        """Run `git <args>` in `cwd` with the safe config, sandboxed, without network."""
        return await self._run(cwd, args, config=config, check=check, stdin=stdin)

    async def _run(
        self,
        cwd: Path,
        args: Sequence[str],
        *,
        config: Sequence[str] = (),
        check: bool = True,
        stdin: bytes | None = None,
        transfer: _Transfer | None = None,
    ) -> GitResult:
        async with contextlib.AsyncExitStack() as held:
            if args[0] not in _READS:
                await held.enter_async_context(self.exclusive(cwd))
            drivers = await self._execute(
                cwd, ("config", "--null", "--name-only", "--get-regexp", DRIVER_KEYS), (), None
            )
            neutral = neutral_drivers(drivers.stdout) if drivers.returncode == 0 else ()
            result = await self._execute(cwd, args, (*neutral, *config), stdin, transfer=transfer)
        if check and result.returncode != 0:
            raise _failed(args[0], result)
        return result

    async def _execute(
        self,
        cwd: Path,
        args: Sequence[str],
        config: Sequence[str],
        stdin: bytes | None,
        *,
        transfer: _Transfer | None = None,
    ) -> GitResult:
        """The one place a git process starts: in the owner's sandbox, which sees the
        repository (writable, at its own path), the scratch HOME (read-only) and what a push or
        a pull adds (`transfer`): the network, or the file:// roots."""
        argv = ["git", "--no-pager"]
        pins = [*SAFE_CONFIG, f"safe.directory={cwd}"]
        for item in (*pins, *config, *(transfer.config if transfer else ())):
            argv += ["-c", item]
        binds = [Bind(self.home, self.home, writable=False)]
        repository = None if cwd == self.home else await _opened(cwd)
        areas: list[int] = []
        if repository is not None:
            binds.append(Bind(cwd, cwd, fd=repository))
        env = {**self._env, "GIT_CEILING_DIRECTORIES": str(cwd.parent)}
        if transfer is not None:
            try:
                binds += await _areas_opened(transfer.binds, areas)
            except BaseException:
                for fd in (*areas, *([repository] if repository is not None else [])):
                    os.close(fd)
                raise
            env.update(transfer.env)
        if args[0] in _READS:
            # A status polled while a commit runs must not take .git/index.lock to refresh it.
            argv.append("--no-optional-locks")
        argv += [args[0], *(transfer.options if transfer else ()), *args[1:]]
        started = time.time()
        try:
            done = await self.sandbox.run(
                argv,
                owner=self._owner(cwd),
                binds=binds,
                cwd=cwd,
                host_cwd=cwd,
                env=env,
                network=transfer is not None and transfer.network,
                stdin=stdin,
                timeout=self.timeout,
            )
        except BaseException:
            # Killed (its timeout, the caller gone): the lock files it held would refuse every
            # later add and commit ("remove the file manually"), and no user can reach .git. A
            # read takes none (no optional locks): one made meanwhile is another git's. The
            # cleanup gets a descriptor of its own, which it closes: the one here is closed
            # below even if this wait is cancelled again.
            if repository is not None and args[0] not in _READS:
                await asyncio.to_thread(_drop_locks_since, os.dup(repository), started)
            raise
        finally:
            if repository is not None:
                os.close(repository)
            for fd in areas:
                os.close(fd)
        stderr = self.scrub(done.stderr.decode(errors="replace"), cwd)
        return GitResult(done.returncode, done.stdout.decode(errors="replace"), stderr)

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
        return parse_status(result.stdout)

    async def log(self, repo: Path, *, limit: int = 50) -> list[Commit]:
        if not 1 <= limit <= MAX_LOG_LIMIT:
            raise InvalidArgument.field("limit", f"must be between 1 and {MAX_LOG_LIMIT}")
        head = await self.run(repo, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
        if head.returncode != 0:
            return []
        # Fields apart by NUL, which no commit can hold (a message may hold any other control
        # character, a terminal's commit included); a commit a line (%s folds the subject's).
        result = await self.run(
            repo, "log", f"--max-count={limit}", "--format=tformat:%H%x00%an%x00%ae%x00%aI%x00%s"
        )
        commits = []
        for record in result.stdout.split("\n"):  # not splitlines: it splits at \x1e too
            if record:
                sha, name, email, when, subject = record.split("\x00", 4)
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
        created = await self.run(repo, "branch", "--no-track", "--", name, check=False)
        if created.returncode != 0:
            # Asked after the failure, not before: a create racing this one may have made it.
            if await self._has_branch(repo, name):
                raise AlreadyExists(f"branch {name} already exists", reason="BRANCH_EXISTS")
            raise _failed("branch", created)

    async def switch_branch(self, repo: Path, name: str) -> None:
        await self.check_branch_name(name)
        switched = await self.run(repo, "switch", "--no-guess", "--", name, check=False)
        if switched.returncode != 0:
            if not await self._has_branch(repo, name):
                raise NotFound(f"no branch named {name}", reason="BRANCH_NOT_FOUND")
            if "overwritten" in switched.stderr:  # local changes in the way, as pull says
                raise Conflict(f"conflict: {switched.stderr.strip()}", reason="GIT_CONFLICT")
            raise _failed("switch", switched)

    async def _has_branch(self, repo: Path, name: str) -> bool:
        found = await self.run(
            repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}", check=False
        )
        return found.returncode == 0

    async def commit(
        self,
        repo: Path,
        message: str,
        *,
        author_name: str,
        author_email: str,
        paths: Sequence[str] | None = None,
        allow_empty: bool = False,
        accept: Callable[[], Awaitable[None]] | None = None,
    ) -> str:
        """Stage `paths` (everything when None) and commit; returns the new commit's sha. With
        `allow_empty`, a commit that changes nothing is made rather than refused.

        `accept` is awaited once the commit is made (a quota check: its objects count): if it
        raises, the commit is undone, its changes left unstaged in the working tree."""
        if not message.strip() or "\x00" in message:
            raise InvalidArgument.field("message", "must not be empty or contain NUL bytes")
        for name, value in (("author_name", author_name), ("author_email", author_email)):
            if (
                not value.strip()
                or CONTROL_CHARACTERS.search(value)
                or "<" in value
                or ">" in value
            ):
                raise InvalidArgument.field(name, "must be non-empty, without control characters")
        pathspecs = [self._repo_path(repo, p) for p in paths] if paths is not None else []
        # One section: another commit of ours between this one and its undo would be undone
        # with it (the undo is relative to HEAD).
        async with self.exclusive(repo):
            return await self._commit(
                repo, message, author_name, author_email, pathspecs, allow_empty, accept
            )

    async def _commit(
        self,
        repo: Path,
        message: str,
        author_name: str,
        author_email: str,
        pathspecs: Sequence[str],
        allow_empty: bool,
        accept: Callable[[], Awaitable[None]] | None,
    ) -> str:
        await self.run(repo, "add", "--all", "--", *pathspecs)
        if not allow_empty:
            staged = await self.run(repo, "diff", "--cached", "--quiet", check=False)
            if staged.returncode == 0:
                raise FailedPrecondition("nothing to commit", reason="GIT_NOTHING_TO_COMMIT")
        identity = (f"user.name={author_name}", f"user.email={author_email}")
        empty = ("--allow-empty",) if allow_empty else ()
        await self.run(
            repo, "commit", "--quiet", "--no-verify", *empty, "--file=-", config=identity,
            stdin=message.encode(),
        )  # fmt: skip
        sha = (await self.run(repo, "rev-parse", "HEAD")).stdout.strip()
        if accept is not None:
            try:
                await accept()
            except BaseException:
                await self._undo_commit(repo, sha)
                raise
        return sha

    async def _undo_commit(self, repo: Path, sha: str) -> None:
        """Take back the commit `sha` just made: HEAD to its parent with the changes left in
        the working tree, the reflog entries of the commit and of this undo dropped, and the
        objects nothing reaches any more pruned (a reflog entry's old value keeps its commit)."""
        parent = await self.run(repo, "rev-parse", "--verify", "--quiet", f"{sha}^", check=False)
        named = await self.run(repo, "symbolic-ref", "--quiet", "HEAD", check=False)
        branch = named.stdout.strip() if named.returncode == 0 else ""
        if parent.returncode == 0:
            await self.run(repo, "reset", "--quiet", "--mixed", parent.stdout.strip())
            for name in ("HEAD", *([branch] if branch else [])):
                for _ in range(2):  # the commit's entry and the reset's
                    await self.run(repo, "reflog", "delete", f"{name}@{{0}}", check=False)
        else:
            # A branch's first commit: no parent to go back to; the branch goes (unborn again)
            # and the index is emptied, the files left as they are. Deleting the branch HEAD
            # names would log its old value in HEAD's reflog: HEAD names another meanwhile.
            await self.run(repo, "reflog", "delete", "HEAD@{0}", check=False)
            if branch:
                await self.run(repo, "symbolic-ref", "HEAD", "refs/heads/stockfolio-undo")
                try:
                    await self.run(repo, "update-ref", "-d", branch, sha)
                finally:
                    await self.run(repo, "symbolic-ref", "HEAD", branch)
            await self.run(repo, "read-tree", "--empty")
        await self.run(repo, "gc", "--quiet", "--prune=now")

    async def add_remote(self, repo: Path, name: str, url: str) -> None:
        """Add a remote. A file:// one lies in the owner's folder of the roots, or in the
        shared one, which serves pulls only (a push to it is refused then)."""
        self._check_remote_name(name)
        await check_destination(await self._destination(repo, url, push=False), self.allowed_hosts)
        await self.run(repo, "remote", "add", "--", name, url)

    async def _destination(self, repo: Path, url: str, *, push: bool) -> Destination:
        """`url` checked for the owner of `repo` (its file:// paths looked at, in a thread)."""
        return await asyncio.to_thread(
            _validate_remote_url, url, self.allowed_file_roots, owner=self._owner(repo), push=push
        )

    async def remotes(self, repo: Path) -> list[Remote]:
        result = await self.run(repo, "remote", "-v")
        found = []
        for line in result.stdout.splitlines():
            name, rest = line.split("\t", 1)
            url, kind = rest.rsplit(" ", 1)
            if kind == "(fetch)":
                found.append(Remote(name, url))
        return found

    async def push(self, repo: Path, *, remote: str = "", branch: str | None = None) -> Pushed:
        """Push `branch` (the current one when None) to `remote` (the default one when empty)
        and track it. A remote that has moved on is a Conflict (pull first); nothing is
        forced."""
        remote = remote or DEFAULT_REMOTE
        branch, transfer = await self._transfer_target(repo, remote, branch, push=True)
        ref = f"refs/heads/{branch}"
        result = await self._run(
            repo, ("push", "--porcelain", "--set-upstream", "--no-recurse-submodules", "--",
                   remote, f"{ref}:{ref}"),
            transfer=transfer, check=False,
        )  # fmt: skip
        if result.returncode == 0:
            return Pushed(branch, remote)
        # Its stdout names the remote's URL as git resolved it: a host path for file:// ones.
        report = f"{self.scrub(result.stdout.strip(), repo)} {result.stderr.strip()}".strip()
        if "[rejected]" in report or "non-fast-forward" in report or "fetch first" in report:
            raise Conflict(
                f"conflict: the remote has commits this branch lacks; pull first ({report})",
                reason="GIT_CONFLICT",
            )
        raise FailedPrecondition(f"git push failed: {report}", reason="GIT_FAILED")

    async def pull(
        self,
        repo: Path,
        *,
        remote: str = "",
        branch: str | None = None,
        accept: Callable[[], Awaitable[None]] | None = None,
    ) -> Pulled:
        """Fast-forward only from `remote` (the default one when empty); anything else is
        refused as a conflict and changes nothing.

        `accept` is awaited once the pull is done (a quota check): if it raises, the branch,
        its remote-tracking ref and the fetched objects are put back as they were."""
        remote = remote or DEFAULT_REMOTE
        branch, transfer = await self._transfer_target(repo, remote, branch, push=False)
        # One section: the undo drops the reflog entries the pull wrote, by count.
        async with self.exclusive(repo):
            return await self._pull(repo, remote, branch, transfer, accept)

    async def _pull(
        self,
        repo: Path,
        remote: str,
        branch: str,
        transfer: _Transfer,
        accept: Callable[[], Awaitable[None]] | None,
    ) -> Pulled:
        names = ("HEAD", f"refs/heads/{branch}", f"refs/remotes/{remote}/{branch}")
        before = await self._refs(repo, names[0], names[2])
        logged = {name: await self._reflog_length(repo, name) for name in names}
        result = await self._run(
            repo, ("pull", "--ff-only", "--no-rebase", "--quiet", "--no-recurse-submodules",
                   "--", remote, branch),
            transfer=transfer, check=False,
        )  # fmt: skip
        refused: DomainError | None = None
        if result.returncode != 0:
            stderr = result.stderr.strip()
            if "fast-forward" in stderr or "overwritten" in stderr or "diverg" in stderr:
                refused = Conflict(f"conflict: {stderr}", reason="GIT_CONFLICT")
            else:
                refused = FailedPrecondition(f"git pull failed: {stderr}", reason="GIT_FAILED")
        if accept is not None:
            # A refused pull has fetched all the same: what it brought counts too (past the
            # quota, it is put back, and the refusal is what the caller hears).
            try:
                await accept()
            except DomainError:
                await self._put_back(repo, before, logged)
                if refused is None:
                    raise
            except BaseException:
                await self._put_back(repo, before, logged)
                raise
        if refused is not None:
            raise refused
        after = await self._refs(repo, "HEAD")
        return Pulled(before["HEAD"], after["HEAD"] or "")

    async def _refs(self, repo: Path, *names: str) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for name in names:
            result = await self.run(repo, "rev-parse", "--verify", "--quiet", name, check=False)
            found[name] = result.stdout.strip() or None
        return found

    async def _reflog_length(self, repo: Path, ref: str) -> int:
        """How many entries `ref`'s reflog holds (0 without one)."""
        found = await self.run(repo, "reflog", "show", "--format=%H", ref, "--", check=False)
        return len(found.stdout.split()) if found.returncode == 0 else 0

    async def _put_back(
        self, repo: Path, refs: Mapping[str, str | None], logged: Mapping[str, int]
    ) -> None:
        """Undo a pull: the working tree back (keeping the user's own changes), the refs back,
        the reflog entries the pull and this undo wrote dropped (`logged`: each reflog's length
        before), then the objects nothing reaches any more pruned. Only those: the user's
        stashes and what their reflogs still reach (a commit after `reset --hard`) stay."""
        for name, sha in refs.items():
            if name == "HEAD" and sha is not None:
                await self.run(repo, "reset", "--quiet", "--keep", sha)
            elif sha is not None:
                await self.run(repo, "update-ref", name, sha)
            else:
                await self.run(repo, "update-ref", "-d", name, check=False)
        for name, length in logged.items():
            for _ in range(await self._reflog_length(repo, name) - length):
                await self.run(repo, "reflog", "delete", f"{name}@{{0}}", check=False)
        # gc expires reflogs by its usual rules only (unreachable entries after 30 days).
        await self.run(repo, "gc", "--quiet", "--prune=now")

    @staticmethod
    def _check_remote_name(name: str) -> str:
        _no_option("remote", name)
        if not _REMOTE_NAME.fullmatch(name) or ".." in name:
            raise InvalidArgument.field("remote", f"{name!r} is not a valid remote name")
        return name

    async def _effective_url(self, repo: Path, remote: str, *, push: bool) -> str:
        """The URL git will really use, with the repository's `insteadOf`/`pushInsteadOf`
        rewriting and `pushurl` applied: that is the one checked, not the one stored."""
        args = ["remote", "get-url", "--all", *(["--push"] if push else []), "--", remote]
        result = await self.run(repo, *args, check=False)
        urls = result.stdout.split("\n")
        urls = [u for u in urls if u]
        if result.returncode != 0 or not urls:
            raise FailedPrecondition(f"no remote named {remote!r}", reason="GIT_NO_REMOTE")
        if len(urls) > 1:
            raise FailedPrecondition(
                f"remote {remote!r} has several URLs; one is supported", reason="GIT_UNSAFE_CONFIG"
            )
        return urls[0]

    def _pins(self, remote: str, checked: Checked, *, push: bool) -> _Transfer:
        """Config, options and environment that make git connect where the check said, and what
        its sandbox is given for it."""
        destination = checked.destination
        url, host = destination.url, destination.host
        pack = SAFE_PACK if destination.scheme == "file" else "git"
        # git keeps the *first* value of remote.<name>.uploadpack/receivepack, so a value in
        # the repository's config beats any -c: the command-line options are what pin them.
        options = (
            (f"--receive-pack={pack} receive-pack",)
            if push
            else (f"--upload-pack={pack} upload-pack",)
        )
        config = [
            f"remote.{remote}.uploadpack={pack} upload-pack",
            f"remote.{remote}.receivepack={pack} receive-pack",
            f"remote.{remote}.proxy=",
            # URL-specific http.<url>.* settings beat plain http.* ones: pin for this very URL.
            f"http.{url}.proxy=",
            f"http.{url}.followRedirects=false",
        ]
        env: dict[str, str] = {}
        address = checked.address
        if address is not None and host is not None and not is_address_literal(host):
            if destination.scheme == "https":
                shown = f"[{address}]" if ":" in address else address
                # An empty value first drops any resolve entries the repository's config added.
                config += [
                    f"http.{url}.curloptResolve=",
                    f"http.{url}.curloptResolve={host}:{destination.port}:{shown}",
                ]
            else:
                # git runs it through a shell: each value quoted (a host name is checked to
                # hold none of a shell's characters too).
                env["GIT_SSH_COMMAND"] = (
                    f"ssh -o BatchMode=yes -o HostName={shlex.quote(address)}"
                    f" -o HostKeyAlias={shlex.quote(host)}"
                )
        if destination.is_network:
            return _Transfer(tuple(config), options, env, network=True, binds=())
        # A local remote needs no network (on the host's, loopback reaches every service),
        # and sees only the folder of the roots it lies in: the owner's (or the shared one),
        # never another user's, whatever a repository there points at (`commondir`,
        # alternates, a link swapped in since the check). Only a push writes to it: a pull
        # that could write there would check its tree out into that folder when the
        # repository's config names it as its `core.worktree`, a bare repository among them
        # whose config a later push to it would obey.
        area = destination.area
        binds = (Bind(area, area, writable=push),) if area is not None else ()
        return _Transfer(tuple(config), options, env, network=False, binds=binds)

    async def _transfer_target(
        self, repo: Path, remote: str, branch: str | None, *, push: bool
    ) -> tuple[str, _Transfer]:
        self._check_remote_name(remote)
        url = await self._effective_url(repo, remote, push=push)
        # Checked at every call: the repository's config may have changed since it was added
        # (or the URL was stored before the rule it breaks).
        destination = await self._destination(repo, url, push=push)
        checked = await check_destination(destination, self.allowed_hosts)
        if branch is None:
            branch = (await self.status(repo)).branch
            if branch is None:
                raise FailedPrecondition("HEAD is detached", reason="GIT_DETACHED")
        return await self.check_branch_name(branch), self._pins(remote, checked, push=push)


__all__ = ["SERVICE_OWNER", "GitRunner", "validate_remote_url"]
