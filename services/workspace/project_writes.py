"""Writes in a caller's project named by id or name (none: their home project), its files' here
and its git's through Versioning (`writing_in`): each finds its project, and, once the write
holds its locks, checks by the project's id that the folder it found is still that project's. A
rename through another replica may have moved it between the look-up and the locks
(ProjectMoved): the write then follows the project by its id and lands where it is now; only a
delete of the project answers 404 PROJECT_NOT_FOUND."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from services.runtime.context import Identity
from services.workspace.authors import ProfileAuthors
from services.workspace.files import Entry, Files, ProjectCheck, ProjectMoved, Written
from services.workspace.projects import PROJECT_MOVES, Located, Projects, project_kept_moving
from services.workspace.repository import ProjectRecord

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
        return await self.writing_in(
            identity,
            key,
            lambda folder, check: self._files.create(
                folder, path, content, encoding, directory=directory, check=check
            ),
        )

    async def update(
        self, identity: Identity, key: str, path: str, content: str, encoding: str, sha: str
    ) -> tuple[ProjectRecord, Written]:
        return await self.writing_in(
            identity,
            key,
            lambda folder, check: self._files.update(
                folder, path, content, encoding, sha, check=check
            ),
        )

    async def delete(self, identity: Identity, key: str, path: str, *, recursive: bool) -> None:
        await self.writing_in(
            identity,
            key,
            lambda folder, check: self._files.delete(
                folder, path, recursive=recursive, check=check
            ),
        )

    async def move(self, identity: Identity, key: str, path: str, new_path: str) -> Entry:
        _, entry = await self.writing_in(
            identity,
            key,
            lambda folder, check: self._files.move(folder, path, new_path, check=check),
        )
        return entry

    async def upload(
        self, identity: Identity, key: str, path: str, chunks: AsyncIterable[bytes]
    ) -> tuple[ProjectRecord, Written]:
        """`chunks` is not read before the write holds its locks (where ProjectMoved is
        raised): a retry still has every byte of it."""
        return await self.writing_in(
            identity,
            key,
            lambda folder, check: self._files.upload(folder, path, chunks, check=check),
        )

    async def writing_in(
        self,
        identity: Identity,
        key: str,
        write: Callable[[Path, ProjectCheck], Awaitable[T]],
    ) -> tuple[ProjectRecord, T]:
        """`write` in the caller's project named by `key`, and that project. `write` gets the
        project's folder and the check to make once it holds its locks (ProjectMoved if the
        folder is no longer the project's); it must have changed nothing before then. The key
        names the project once: if a rename came between the look-up and the write's locks,
        the project is followed by its id (not by the key again: a name may by then be another
        project's, renamed into it), and the write runs again where it is now. Renamed again
        each time it is followed: ABORTED PATH_CHANGED (try again)."""
        located = await self._projects.locate_or_home(
            identity.user_id, key, lambda: self._authors.author(identity)
        )
        for _ in range(PROJECT_MOVES):
            try:
                return located.project, await write(located.directory, self._check(located))
            except ProjectMoved:
                located = await self._projects.relocate(identity.user_id, located.project.id)
        raise project_kept_moving(located.project.name)

    def _check(self, located: Located) -> ProjectCheck:
        """The check a write makes under its locks: the folder it was given is still its
        project's, by the project's id."""

        async def still_there() -> None:
            if not await self._projects.still_named(located):
                raise ProjectMoved(
                    f"project {located.project.name!r} was renamed or deleted meanwhile"
                )

        return still_there
