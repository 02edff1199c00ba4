"""Git for workspace projects, against a real local bare repository as the remote."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypedDict

import pytest

from services.runtime.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from services.runtime.sandbox import Sandbox
from services.workspace.git import SERVICE_OWNER, GitRunner, validate_remote_url
from services.workspace.quota import BYTES, QuotaExceeded, Usage


class Author(TypedDict):
    author_name: str
    author_email: str


AUTHOR: Author = {"author_name": "Alice Example", "author_email": "alice@example.com"}


@pytest.fixture
async def git(tmp_path: Path) -> AsyncIterator[GitRunner]:
    home = tmp_path / "home"
    home.mkdir()
    runner = GitRunner(timeout=20, allowed_file_roots=[tmp_path / "remotes"], home=home)
    yield runner
    runner.close()


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    remote = tmp_path / "remotes" / SERVICE_OWNER / "project.git"
    remote.mkdir(parents=True)
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(remote)])
    return remote


async def new_project(git: GitRunner, path: Path, remote: Path | None = None) -> Path:
    await git.init(path)
    if remote is not None:
        await git.add_remote(path, "origin", remote.as_uri())
    return path


async def commit_file(git: GitRunner, repo: Path, name: str, text: str, message: str) -> str:
    (repo / name).write_text(text)
    return await git.commit(repo, message, **AUTHOR)


async def clone_of(git: GitRunner, tmp_path: Path, bare: Path) -> Path:
    """Another clone of the remote `bare`, as someone else's machine would have."""
    clone = tmp_path / "clone"
    await git.run(tmp_path, "clone", "--quiet", "--", bare.as_uri(), str(clone))
    return clone


async def pushed_project(git: GitRunner, tmp_path: Path, bare: Path) -> Path:
    """A project whose first commit (a.txt) is pushed to the remote `bare`."""
    repo = await new_project(git, tmp_path / "p", bare)
    await commit_file(git, repo, "a.txt", "1\n", "first")
    await git.push(repo)
    return repo


async def test_init_starts_on_main_with_no_commits(git: GitRunner, tmp_path: Path) -> None:
    repo = await new_project(git, tmp_path / "p")
    status = await git.status(repo)
    assert (status.branch, status.commit, status.upstream) == ("main", None, None)
    assert await git.log(repo) == []
    assert await git.branches(repo) == []


async def test_status_reports_staged_unstaged_and_untracked_files(
    git: GitRunner, tmp_path: Path
) -> None:
    repo = await new_project(git, tmp_path / "p")
    await commit_file(git, repo, "a.txt", "one\n", "first")
    (repo / "a.txt").write_text("two\n")
    (repo / "b.txt").write_text("staged\n")
    await git.run(repo, "add", "--", "b.txt")
    (repo / "new dir").mkdir()
    (repo / "new dir" / "c d.txt").write_text("untracked\n")

    status = await git.status(repo)
    assert [(c.path, c.code) for c in status.staged] == [("b.txt", "A")]
    assert [(c.path, c.code) for c in status.unstaged] == [("a.txt", "M")]
    assert status.untracked == ["new dir/c d.txt"]
    assert "+two" in await git.diff(repo)
    assert "+staged" in await git.diff(repo, staged=True)
    assert await git.diff(repo, path="b.txt") == ""


async def test_commit_records_the_author_and_log_lists_newest_first(
    git: GitRunner, tmp_path: Path
) -> None:
    repo = await new_project(git, tmp_path / "p")
    first = await commit_file(git, repo, "a.txt", "1", "first commit")
    second = await commit_file(git, repo, "a.txt", "2", "-second commit looks like an option")

    log = await git.log(repo)
    assert [c.sha for c in log] == [second, first]
    assert log[0].subject == "-second commit looks like an option"
    assert (log[0].author_name, log[0].author_email) == ("Alice Example", "alice@example.com")
    assert log[0].authored_at.tzinfo is not None
    assert [c.sha for c in await git.log(repo, limit=1)] == [second]
    with pytest.raises(FailedPrecondition, match="nothing to commit"):
        await git.commit(repo, "empty", **AUTHOR)


async def test_branches_are_created_listed_and_switched(git: GitRunner, tmp_path: Path) -> None:
    repo = await new_project(git, tmp_path / "p")
    sha = await commit_file(git, repo, "a.txt", "1", "first")
    await git.create_branch(repo, "feature/login")
    await git.switch_branch(repo, "feature/login")

    branches = {b.name: b for b in await git.branches(repo)}
    assert set(branches) == {"main", "feature/login"}
    assert branches["feature/login"].current and not branches["main"].current
    assert branches["main"].commit == sha
    assert (await git.status(repo)).branch == "feature/login"


@pytest.mark.parametrize("name", ["-f", "--force", "a..b", "bad name", "x.lock", "@{-1}", "a~1"])
async def test_invalid_branch_names_are_refused(git: GitRunner, tmp_path: Path, name: str) -> None:
    repo = await new_project(git, tmp_path / "p")
    await commit_file(git, repo, "a.txt", "1", "first")
    with pytest.raises(InvalidArgument) as caught:
        await git.create_branch(repo, name)
    assert caught.value.fields[0][0] == "branch"
    assert [b.name for b in await git.branches(repo)] == ["main"]


async def test_push_then_clone_elsewhere_finds_the_commit(
    git: GitRunner, tmp_path: Path, bare: Path
) -> None:
    repo = await new_project(git, tmp_path / "p", bare)
    sha = await commit_file(git, repo, "README.md", "# hello\n", "first")
    await git.push(repo)

    clone = await clone_of(git, tmp_path, bare)
    assert [c.sha for c in await git.log(clone)] == [sha]
    assert (clone / "README.md").read_text() == "# hello\n"
    status = await git.status(repo)
    assert (status.upstream, status.ahead, status.behind) == ("origin/main", 0, 0)


async def test_a_commit_pushed_from_elsewhere_is_pulled_back(
    git: GitRunner, tmp_path: Path, bare: Path
) -> None:
    repo = await pushed_project(git, tmp_path, bare)
    clone = await clone_of(git, tmp_path, bare)
    theirs = await commit_file(git, clone, "b.txt", "from the clone\n", "second")
    await git.push(clone)

    await git.pull(repo)
    assert (await git.log(repo))[0].sha == theirs
    assert (repo / "b.txt").read_text() == "from the clone\n"


async def test_pull_of_a_diverged_history_is_refused_and_changes_nothing(
    git: GitRunner, tmp_path: Path, bare: Path
) -> None:
    repo = await pushed_project(git, tmp_path, bare)
    clone = await clone_of(git, tmp_path, bare)
    await commit_file(git, clone, "a.txt", "theirs\n", "theirs")
    await git.push(clone)
    ours = await commit_file(git, repo, "a.txt", "ours\n", "ours")
    (repo / "notes.txt").write_text("work in progress\n")

    with pytest.raises(Conflict) as caught:
        await git.pull(repo)
    assert caught.value.message.startswith("conflict: ")
    assert caught.value.reason == "GIT_CONFLICT"
    assert (await git.log(repo))[0].sha == ours
    assert (repo / "a.txt").read_text() == "ours\n"
    assert (repo / "notes.txt").read_text() == "work in progress\n"
    assert (await git.status(repo)).untracked == ["notes.txt"]


@pytest.mark.parametrize(
    "url",
    [
        "ext::sh -c touch% /tmp/pwned",
        "ext::sh",
        "fd::3",
        "--upload-pack=touch /tmp/pwned",
        "-oProxyCommand=touch /tmp/pwned",
        "https://user:secret@example.com/repo.git",
        "https://token@example.com/repo.git",
        "ssh://user:secret@example.com/repo.git",
        "git://example.com/repo.git",
        "http://example.com/repo.git",
        "ftp://example.com/repo.git",
        "git@-oProxyCommand=x:repo.git",
        "file:///etc",
        "/etc/passwd",
        "../other-user/repo.git",
    ],
)
def test_unsafe_remote_urls_are_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_remote_url(url, [tmp_path], owner="ada")
    assert [name for name, _ in caught.value.fields] == ["url"]


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/alice/repo.git",
        "ssh://git@github.com/alice/repo.git",
        "git@github.com:alice/repo.git",
    ],
)
def test_safe_remote_urls_are_accepted(url: str, tmp_path: Path) -> None:
    assert validate_remote_url(url, [tmp_path], owner="ada") == url
    inside = (tmp_path / "ada" / "r.git").as_uri()
    assert validate_remote_url(inside, [tmp_path], owner="ada") == inside


async def test_remotes_are_added_and_listed_and_bad_values_refused(
    git: GitRunner, tmp_path: Path, bare: Path
) -> None:
    repo = await new_project(git, tmp_path / "p", bare)
    assert [(r.name, r.url) for r in await git.remotes(repo)] == [("origin", bare.as_uri())]
    with pytest.raises(InvalidArgument, match="url"):
        await git.add_remote(repo, "evil", "ext::sh -c touch% /tmp/pwned")
    with pytest.raises(InvalidArgument, match="remote"):
        await git.add_remote(repo, "--upload-pack=touch", bare.as_uri())
    assert [r.name for r in await git.remotes(repo)] == ["origin"]


async def test_a_remote_edited_into_ext_is_refused_at_push_time(
    git: GitRunner, tmp_path: Path
) -> None:
    repo = await new_project(git, tmp_path / "p")
    await commit_file(git, repo, "a.txt", "1", "first")
    marker = tmp_path / "pwned"
    await git.run(repo, "config", "remote.origin.url", f"ext::sh -c touch% {marker}")
    with pytest.raises(InvalidArgument):
        await git.push(repo)
    assert not marker.exists()


async def test_option_like_paths_are_refused(git: GitRunner, tmp_path: Path) -> None:
    repo = await new_project(git, tmp_path / "p")
    with pytest.raises(InvalidArgument):
        await git.diff(repo, path="--output=/tmp/pwned")
    with pytest.raises(InvalidArgument):
        await git.commit(repo, "x", paths=["../outside"], **AUTHOR)


async def test_hooks_and_fsmonitor_in_the_repository_config_never_run(
    git: GitRunner, tmp_path: Path
) -> None:
    repo = await new_project(git, tmp_path / "p")
    marker = tmp_path / "marker"
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for hook in ("pre-commit", "commit-msg", "post-commit", "post-checkout"):
        (hooks / hook).write_text(script.read_text())
        (hooks / hook).chmod(0o755)
    await git.run(repo, "config", "core.hooksPath", str(hooks))
    await git.run(repo, "config", "core.fsmonitor", str(script))
    await git.run(repo, "config", "credential.helper", f"!{script}")

    await git.status(repo)
    await commit_file(git, repo, "a.txt", "1", "first")
    await git.create_branch(repo, "next")
    await git.switch_branch(repo, "next")
    await git.status(repo)
    assert not marker.exists()


async def test_an_automatic_gc_runs_within_the_call_whatever_the_repository_says(
    git: GitRunner, tmp_path: Path
) -> None:
    # Detached, it outlived the call and was killed with its sandbox, leaving gc.pid.lock.
    repo = await new_project(git, tmp_path / "p")
    await git.run(repo, "config", "gc.autoDetach", "true")
    await git.run(repo, "config", "maintenance.autoDetach", "true")
    for key in ("gc.autoDetach", "maintenance.autoDetach"):
        seen = await git.run(repo, "config", "--get", key)
        assert seen.stdout.strip() == "false", key


async def test_a_git_call_that_outlives_the_timeout_is_killed(tmp_path: Path) -> None:
    runner = GitRunner(timeout=20, home=tmp_path)
    repo = tmp_path / "p"
    await runner.init(repo)  # at a usual timeout: a sandboxed git is slow to start under load
    runner.timeout = 0.5
    # A stand-in for a hanging network operation: an alias that starts a long child process.
    start = asyncio.get_running_loop().time()
    with pytest.raises(Unavailable, match="timed out"):
        await runner.run(repo, "hang", config=["alias.hang=!sleep 30"])
    assert asyncio.get_running_loop().time() - start < 5


async def test_hooks_of_a_file_remote_do_not_run_when_pushing(
    git: GitRunner, tmp_path: Path, bare: Path
) -> None:
    marker = tmp_path / "marker"
    for hook in ("pre-receive", "update", "post-receive", "post-update"):
        (bare / "hooks" / hook).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (bare / "hooks" / hook).chmod(0o755)
    repo = await new_project(git, tmp_path / "p", bare)
    sha = await commit_file(git, repo, "a.txt", "1", "first")
    await git.push(repo)
    await git.pull(repo)
    assert not marker.exists()
    remote_head = await git.run(bare, "rev-parse", "refs/heads/main")
    assert remote_head.stdout.strip() == sha


async def test_filter_drivers_in_the_repository_config_never_run(
    git: GitRunner, tmp_path: Path
) -> None:
    repo = await new_project(git, tmp_path / "p")
    marker = tmp_path / "marker"
    (repo / ".gitattributes").write_text("* filter=evil\n")
    await git.run(repo, "config", "filter.evil.clean", f"sh -c 'touch {marker}; cat'")
    await git.run(repo, "config", "filter.evil.smudge", f"sh -c 'touch {marker}; cat'")
    await git.run(repo, "config", "filter.evil.process", f"sh -c 'touch {marker}'")
    await git.run(repo, "config", "filter.evil.required", "true")

    await commit_file(git, repo, "a.txt", "plain\n", "first")
    await git.create_branch(repo, "next")
    await git.switch_branch(repo, "next")
    await git.status(repo)
    assert not marker.exists()
    shown = await git.run(repo, "show", "HEAD:a.txt")
    assert shown.stdout == "plain\n"


# --- a commit taken back (its quota check refused it) never takes another's with it ----------


def _refused() -> QuotaExceeded:
    return QuotaExceeded(BYTES, Usage(2, 1), Usage(1, 1))


async def test_two_commits_refused_at_once_leave_the_history_as_it_was(
    git: GitRunner, tmp_path: Path
) -> None:
    """The undo is relative to the commit (`reset <sha>^`): run beside another commit, the
    second undo moved HEAD onto the first refused commit, which stayed. Each commit and its
    undo are now one section: the second waits for the first."""
    repo = tmp_path / "p"
    await git.init(repo)
    (repo / "a.txt").write_text("1\n")
    base = await git.commit(repo, "first", **AUTHOR)
    measuring, one_done = asyncio.Event(), asyncio.Event()

    async def refuse_slowly() -> None:  # the quota check: measuring takes a moment
        measuring.set()
        await asyncio.sleep(0.3)
        raise _refused()

    async def refuse_after_one() -> None:
        await one_done.wait()
        raise _refused()

    async def tab_one() -> None:
        try:
            await git.commit(repo, "tab one", paths=["b.txt"], accept=refuse_slowly, **AUTHOR)
        finally:
            one_done.set()

    async def tab_two() -> None:
        await measuring.wait()
        (repo / "c.txt").write_text("c\n")
        await git.commit(repo, "tab two", paths=["c.txt"], accept=refuse_after_one, **AUTHOR)

    (repo / "b.txt").write_text("b\n")
    outcomes = await asyncio.gather(tab_one(), tab_two(), return_exceptions=True)
    assert [type(o) for o in outcomes] == [QuotaExceeded, QuotaExceeded]
    assert (await git.run(repo, "rev-parse", "HEAD")).stdout.strip() == base
    assert [c.subject for c in await git.log(repo)] == ["first"]
    assert (repo / "b.txt").read_text() == "b\n" and (repo / "c.txt").read_text() == "c\n"


async def test_a_commit_answered_as_made_survives_another_callers_hang_up(
    git: GitRunner, tmp_path: Path
) -> None:
    """Tab one's client hangs up while its quota check runs; tab two commits just after and
    is answered with its sha. Tab one's undo (`reset <its sha>^`, then `gc --prune=now`) took
    tab two's commit with it."""
    repo = tmp_path / "p"
    await git.init(repo)
    (repo / "a.txt").write_text("1\n")
    await git.commit(repo, "first", **AUTHOR)
    measuring = asyncio.Event()

    async def measuring_forever() -> None:
        measuring.set()
        await asyncio.Event().wait()

    async def within_quota() -> None:
        return None

    (repo / "b.txt").write_text("b\n")
    tab_one = asyncio.create_task(
        git.commit(repo, "tab one", paths=["b.txt"], accept=measuring_forever, **AUTHOR)
    )
    await measuring.wait()
    (repo / "c.txt").write_text("c\n")
    tab_two = asyncio.create_task(
        git.commit(repo, "tab two", paths=["c.txt"], accept=within_quota, **AUTHOR)
    )
    await asyncio.sleep(0.2)
    tab_one.cancel()  # tab one's client went away
    with pytest.raises(asyncio.CancelledError):
        await tab_one
    answered = await tab_two
    assert (await git.run(repo, "cat-file", "-e", answered, check=False)).returncode == 0
    assert [c.subject for c in await git.log(repo)] == ["tab two", "first"]


async def test_a_cancelled_status_leaves_another_gits_index_lock_alone(
    git: GitRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read takes no lock (no optional locks): a cancelled status poll removed the
    index.lock of whatever wrote then (here the user's own `git commit` in their terminal,
    its editor open), which then could not write its index. A delay is injected before the
    status runs: on a loaded machine it is still running when the page goes away."""
    repo = tmp_path / "p"
    await git.init(repo)
    (repo / "a.txt").write_text("1\n")
    await git.commit(repo, "first", **AUTHOR)
    (repo / "a.txt").write_text("2\n")
    real_run = Sandbox.run

    async def slow_run(self: Sandbox, argv: Any, **kw: Any) -> Any:
        if "status" in argv:
            await asyncio.sleep(2.0)
        return await real_run(self, argv, **kw)

    monkeypatch.setattr(Sandbox, "run", slow_run)
    polling = asyncio.create_task(git.status(repo))  # the page's poll
    await asyncio.sleep(0.2)
    terminal = await asyncio.create_subprocess_exec(
        *["git", "-c", "user.name=Ada", "-c", "user.email=ada@example.com", "commit", "-a"],
        cwd=repo,
        env={**os.environ, "GIT_EDITOR": "sleep 1.5; echo msg >"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    for _ in range(200):
        if (repo / ".git" / "index.lock").exists():
            break
        await asyncio.sleep(0.01)
    assert (repo / ".git" / "index.lock").exists()
    polling.cancel()  # the page went away
    with pytest.raises(asyncio.CancelledError):
        await polling
    assert (repo / ".git" / "index.lock").exists()
    _, err = await terminal.communicate()
    assert terminal.returncode == 0, err.decode()


async def test_git_in_a_project_folder_gone_since_its_look_up_is_project_not_found(
    git: GitRunner, tmp_path: Path
) -> None:
    """A project renamed or deleted through another replica between its look-up and the git
    call: the folder is not there, which is the project not found (404), not an internal
    error (a FileNotFoundError answered 500)."""
    repo = await new_project(git, tmp_path / "p")
    repo.rename(tmp_path / "renamed")
    with pytest.raises(NotFound) as raised:
        await git.status(repo)
    assert raised.value.reason == "PROJECT_NOT_FOUND"
    assert "'p' is gone" in raised.value.message
