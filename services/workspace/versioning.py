"""Git on a caller's project, as the caller: commits by their profile, pulls under their quota,
branches answered as they stand after the change.

Every change runs as one git section (GitRunner.exclusive) in the project named by id or name
(none: the caller's home project), found and followed by its id as a file write is
(ProjectWrites.writing_in): a rename through another replica between the look-up and the
section's locks moves the whole change to where the project is now, and one asked for while the
section runs waits for it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from services.runtime.context import Identity
from services.workspace.authors import ProfileAuthors
from services.workspace.files import ProjectCheck
from services.workspace.git import GitRunner
from services.workspace.git_values import Branch, Pulled, Pushed
from services.workspace.project_writes import ProjectWrites
from services.workspace.projects import Author
from services.workspace.quota import QuotaExceeded, Quotas

T = TypeVar("T")


@dataclass(frozen=True)
class Committed:
    sha: str
    author: Author


class Versioning:
    def __init__(
        self, git: GitRunner, authors: ProfileAuthors, quotas: Quotas, writes: ProjectWrites
    ) -> None:
        self._git = git
        self._authors = authors
        self._quotas = quotas
        self._writes = writes

    async def _in_project(
        self, identity: Identity, key: str, change: Callable[[Path], Awaitable[T]]
    ) -> T:
        """`change` (given the project's folder) as one git section in the caller's project
        named by `key`, wherever the project lies when the section's locks are held."""

        async def section(folder: Path, check: ProjectCheck) -> T:
            async with self._git.exclusive(folder, check=check):
                return await change(folder)

        _, done = await self._writes.writing_in(identity, key, section)
        return done

    async def commit(
        self, identity: Identity, key: str, message: str, paths: Sequence[str]
    ) -> Committed:
        """Stages `paths` (everything when none) and commits them as the caller's profile."""
        author = await self._authors.author(identity)

        async def commit(folder: Path) -> str:
            async with self._measured_again_if_undone(folder.parent):
                return await self._git.commit(
                    folder,
                    message,
                    author_name=author.name,
                    author_email=author.email,
                    paths=list(paths) or None,
                    # Its objects count in the owner's quota: a commit past it is taken back.
                    accept=lambda: self._quotas.check_now(folder.parent),
                )

        return Committed(await self._in_project(identity, key, commit), author)

    @contextlib.asynccontextmanager
    async def _measured_again_if_undone(self, folder: Path) -> AsyncIterator[None]:
        """A change taken back for the quota: the usage measured with it (past the quota, for
        every replica) is measured again at the next check."""
        try:
            yield
        except QuotaExceeded:
            await self._quotas.forget(folder)
            raise

    async def create_branch(self, identity: Identity, key: str, name: str) -> Branch:
        async def create(folder: Path) -> Branch:
            await self._git.create_branch(folder, name)
            return await self._branch(folder, name)

        return await self._in_project(identity, key, create)

    async def switch_branch(self, identity: Identity, key: str, name: str) -> Branch:
        async def switch(folder: Path) -> Branch:
            await self._git.switch_branch(folder, name)
            return await self._branch(folder, name)

        return await self._in_project(identity, key, switch)

    async def add_remote(self, identity: Identity, key: str, name: str, url: str) -> None:
        async def add(folder: Path) -> None:
            await self._git.add_remote(folder, name, url)

        await self._in_project(identity, key, add)

    async def push(self, identity: Identity, key: str, remote: str, branch: str) -> Pushed:
        """`branch` (empty: the current one) to `remote` (empty: the default one)."""

        async def push(folder: Path) -> Pushed:
            return await self._git.push(folder, remote=remote, branch=branch or None)

        return await self._in_project(identity, key, push)

    async def pull(self, identity: Identity, key: str, remote: str, branch: str) -> Pulled:
        """A fast-forward from `remote` (empty: the default one); one that takes the owner past
        their quota is undone (every project lies in its owner's folder)."""

        async def pull(folder: Path) -> Pulled:
            async with self._measured_again_if_undone(folder.parent):
                return await self._git.pull(
                    folder,
                    remote=remote,
                    branch=branch or None,
                    accept=lambda: self._quotas.check_now(folder.parent),
                )

        return await self._in_project(identity, key, pull)

    async def _branch(self, folder: Path, name: str) -> Branch:
        for branch in await self._git.branches(folder):
            if branch.name == name:
                return branch
        return Branch(name, current=False, commit="")
