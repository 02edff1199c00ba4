"""File writes in a caller's project named by id or name (none: their home project): each finds
its project, and finds it again when a rename of the project through another replica moved it
between the look-up and the write's locks (Files raises ProjectMoved once they are held)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from typing import TypeVar

from services.runtime.context import Identity
from services.workspace.authors import ProfileAuthors
from services.workspace.files import Entry, Files, ProjectMoved, Written
from services.workspace.projects import Located, Projects
from services.workspace.repository import ProjectRecord

# How many times a write looks for its project again after a rename through another replica
# moved it between the look-up and the write's locks (each time, another rename came first).
PROJECT_MOVES = 3

T = TypeVar("T")


class ProjectWrites:
    def __init__(self, projects: Projects, files: Files, authors: ProfileAuthors) -> None:
        self._projects = projects
        self._files = files
        self._authors = authors

    async def create(
        self,
        identity: Identity,
        key: str,
        path: str,
        content: str,
        encoding: str,
        *,
        directory: bool,
    ) -> tuple[ProjectRecord, Written]:
        return await self._writing_in(
            identity,
            key,
            lambda located: self._files.create(
                located.directory, path, content, encoding, directory=directory
            ),
        )

    async def update(
        self, identity: Identity, key: str, path: str, content: str, encoding: str, sha: str
    ) -> tuple[ProjectRecord, Written]:
        return await self._writing_in(
            identity,
            key,
            lambda located: self._files.update(located.directory, path, content, encoding, sha),
        )

    async def delete(self, identity: Identity, key: str, path: str, *, recursive: bool) -> None:
        await self._writing_in(
            identity,
            key,
            lambda located: self._files.delete(located.directory, path, recursive=recursive),
        )

    async def move(self, identity: Identity, key: str, path: str, new_path: str) -> Entry:
        _, entry = await self._writing_in(
            identity, key, lambda located: self._files.move(located.directory, path, new_path)
        )
        return entry

    async def upload(
        self, identity: Identity, key: str, path: str, chunks: AsyncIterable[bytes]
    ) -> tuple[ProjectRecord, Written]:
        """`chunks` is not read before the write holds its locks (where ProjectMoved is
        raised): a retry still has every byte of it."""
        return await self._writing_in(
            identity, key, lambda located: self._files.upload(located.directory, path, chunks)
        )

    async def _writing_in(
        self, identity: Identity, key: str, write: Callable[[Located], Awaitable[T]]
    ) -> tuple[ProjectRecord, T]:
        """`write` in the caller's project named by `key`, and that project; located again if
        a rename of the project through another replica came between the look-up and the
        write's locks (the write then lands where the project is now; a delete: 404
        PROJECT_NOT_FOUND)."""
        for attempt in range(PROJECT_MOVES):
            located = await self._projects.locate_or_home(
                identity.user_id, key, lambda: self._authors.author(identity)
            )
            try:
                return located.project, await write(located)
            except ProjectMoved:
                if attempt == PROJECT_MOVES - 1:
                    raise
        raise AssertionError("unreachable")
