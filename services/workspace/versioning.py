"""Git on a caller's project, as the caller: commits by their profile, pulls under their quota,
branches answered as they stand after the change."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.runtime.context import Identity
from services.workspace.authors import ProfileAuthors
from services.workspace.git import GitRunner
from services.workspace.git_values import Branch, Pulled, Pushed
from services.workspace.projects import Author, Located
from services.workspace.quota import QuotaExceeded, Quotas


@dataclass(frozen=True)
class Committed:
    sha: str
    author: Author


class Versioning:
    def __init__(self, git: GitRunner, authors: ProfileAuthors, quotas: Quotas) -> None:
        self._git = git
        self._authors = authors
        self._quotas = quotas

    async def commit(
        self, identity: Identity, located: Located, message: str, paths: Sequence[str]
    ) -> Committed:
        """Stages `paths` (everything when none) and commits them as the caller's profile."""
        author = await self._authors.author(identity)
        async with self._measured_again_if_undone(located.directory.parent):
            sha = await self._git.commit(
                located.directory,
                message,
                author_name=author.name,
                author_email=author.email,
                paths=list(paths) or None,
                # Its objects count in the owner's quota: a commit past it is taken back.
                accept=lambda: self._quotas.check_now(located.directory.parent),
            )
        return Committed(sha, author)

    @contextlib.asynccontextmanager
    async def _measured_again_if_undone(self, folder: Path) -> AsyncIterator[None]:
        """A change taken back for the quota: the usage measured with it (past the quota, for
        every replica) is measured again at the next check."""
        try:
            yield
        except QuotaExceeded:
            await self._quotas.forget(folder)
            raise

    async def create_branch(self, located: Located, name: str) -> Branch:
        await self._git.create_branch(located.directory, name)
        return await self._branch(located, name)

    async def switch_branch(self, located: Located, name: str) -> Branch:
        await self._git.switch_branch(located.directory, name)
        return await self._branch(located, name)

    async def push(self, located: Located, remote: str, branch: str) -> Pushed:
        """`branch` (empty: the current one) to `remote` (empty: the default one)."""
        return await self._git.push(located.directory, remote=remote, branch=branch or None)

    async def pull(self, located: Located, remote: str, branch: str) -> Pulled:
        """A fast-forward from `remote` (empty: the default one); one that takes the owner past
        their quota is undone (every project lies in its owner's folder)."""
        async with self._measured_again_if_undone(located.directory.parent):
            return await self._git.pull(
                located.directory,
                remote=remote,
                branch=branch or None,
                accept=lambda: self._quotas.check_now(located.directory.parent),
            )

    async def _branch(self, located: Located, name: str) -> Branch:
        for branch in await self._git.branches(located.directory):
            if branch.name == name:
                return branch
        return Branch(name, current=False, commit="")
