"""Projects: each a folder under its owner's root with a git repository of its own, indexed in
the database. Another user's project is as absent as one that never existed.

A new project is built in a staging folder (template files, `git init`, a first commit) and
renamed into place only once it is indexed, so a failure leaves neither a half-made folder nor
an index entry without one. Deleting moves the folder to the staging area first, then removes it.

A call naming no project acts on the user's default project, `home`: built on first use the way
every project is (with no files and an empty first commit), or the project already so named.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from services.runtime.pagination import Page
from services.workspace.git import GitRunner
from services.workspace.locks import KeyedLocks, VolumeLocks, project_place
from services.workspace.paths import atomic_write, open_project_folder, validate_name
from services.workspace.quota import Quotas, Reservation, Usage, measure
from services.workspace.repository import NameTaken, ProjectRecord, ProjectRepository
from services.workspace.staging import staging_folder
from services.workspace.templates import (
    DEFAULT_TEMPLATE,
    HOME_TEMPLATE,
    TEMPLATES,
    template_files,
)

# A project's name is also its folder's: letters, digits, '.', '_' and '-', not starting with
# a dot or a dash (no hidden folders, nothing git or a shell could read as an option).
_PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# The project a call naming none acts on.
HOME = "home"
# How long to look for a home project another replica is making: its folder is in place a
# moment before its index entry is committed.
_HOME_RACE_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8)
# How many times a look-up follows a project that moves again as it is looked for (each time,
# another rename of it came first): a project renamed on and on answers "try again", not 404.
PROJECT_MOVES = 3


@dataclass(frozen=True)
class Author:
    name: str
    email: str


@dataclass(frozen=True)
class Located:
    """A project and the folder it lives in."""

    project: ProjectRecord
    directory: Path


@dataclass(frozen=True)
class Resolved:
    """A folder a caller may work in, relative to the workspace root, and the project it is
    (None: their own root folder)."""

    project: ProjectRecord | None
    directory: Path


def clean_project_name(name: str, field: str = "name") -> str:
    name = name.strip()
    if not _PROJECT_NAME.fullmatch(name) or name.endswith(".lock") or ".." in name:
        raise InvalidArgument.field(
            field,
            "must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name


def project_not_found(key: str) -> NotFound:
    return NotFound(f"project {key!r} not found", reason="PROJECT_NOT_FOUND")


def project_kept_moving(name: str) -> Conflict:
    return Conflict(
        f"project {name!r} was renamed again each time it was looked for; try again",
        reason="PATH_CHANGED",
    )


def _folder_missing(name: str) -> NotFound:
    return NotFound(f"the folder of project {name!r} is missing", reason="PROJECT_NOT_FOUND")


class Projects:
    def __init__(
        self,
        db: Database,
        root: Path,
        git: GitRunner,
        *,
        clock: Callable[[], datetime] = utc_now,
        quotas: Quotas | None = None,
        places: VolumeLocks | None = None,
    ) -> None:
        self._db = db
        self._root = root
        self._git = git
        self._clock = clock
        self._quotas = quotas
        # One home made at a time per user in this process (replicas race through the index).
        self._homes: KeyedLocks[str] = KeyedLocks()
        # Projects' places (`project_place`), on the locks the file writes hold (Files.locks):
        # a rename or a delete holds its project's alone, each write shares it.
        self._places = places if places is not None else VolumeLocks(None)

    # --- folders ---------------------------------------------------------------------------

    def user_root(self, user_id: str) -> Path:
        try:
            validate_name(user_id)
        except InvalidArgument:
            raise InvalidArgument("the caller's user id cannot name a folder") from None
        if user_id.startswith("."):
            raise InvalidArgument("the caller's user id cannot name a folder")
        return self._root / user_id

    async def ensure_user_root(self, user_id: str) -> Path:
        folder = self.user_root(user_id)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        return folder

    async def _staging(self) -> Path:
        return await asyncio.to_thread(staging_folder, self._root)

    # --- use cases -------------------------------------------------------------------------

    async def create(
        self, user_id: str, name: str, template: str, author: Callable[[], Awaitable[Author]]
    ) -> ProjectRecord:
        """A new project from `template`; its first commit is by `author` (asked once the name
        and template are known to be good)."""
        name = clean_project_name(name)
        template = template.strip().lower() or DEFAULT_TEMPLATE
        if template not in TEMPLATES:
            raise InvalidArgument.field("template", f"must be one of {', '.join(TEMPLATES)}")
        return await self._create(
            user_id,
            name,
            template,
            template_files(template, name),
            await author(),
            f"Start from the {template} template",
        )

    async def _create(
        self,
        user_id: str,
        name: str,
        template: str,
        files: dict[str, str],
        author: Author,
        first_commit: str,
    ) -> ProjectRecord:
        owner_folder = await self.ensure_user_root(user_id)
        target = owner_folder / name
        if await asyncio.to_thread(target.exists):
            raise AlreadyExists(f"a folder named {name!r} already exists", reason="PROJECT_EXISTS")
        now = self._clock()
        record = ProjectRecord(str(uuid.uuid4()), user_id, name, template, now, now)
        staged = (await self._staging()) / record.id
        try:
            await self._build(staged, files, author, first_commit)
            # The new project counts in full (its repository too) before it is put in place.
            made = await asyncio.to_thread(measure, staged)
            async with self._room(owner_folder, made) as room:
                async with self._db.transaction() as session:
                    try:
                        await ProjectRepository(session).add(record)
                    except NameTaken:
                        raise AlreadyExists(
                            f"a project named {name!r} already exists", reason="PROJECT_EXISTS"
                        ) from None
                    await asyncio.to_thread(_rename_no_replace, staged, target)
                if self._quotas is not None:
                    await self._quotas.changed(
                        owner_folder, size=made.bytes, files=made.files, releasing=room
                    )
        finally:
            await asyncio.to_thread(shutil.rmtree, staged, True)
        return record

    @contextlib.asynccontextmanager
    async def _room(self, owner_folder: Path, made: Usage) -> AsyncIterator[Reservation | None]:
        """Room for a new project in its owner's quota, beside the writes under way (an upload
        meanwhile must not see it uncounted, nor it the upload), held until it is accounted."""
        if self._quotas is None:
            yield None
            return
        reservation = await self._quotas.reserve(owner_folder, size=made.bytes, files=made.files)
        try:
            yield reservation
        finally:
            await reservation.release()

    async def _build(
        self, folder: Path, files: dict[str, str], author: Author, first_commit: str
    ) -> None:
        await asyncio.to_thread(folder.mkdir, parents=True)
        for relative, text in files.items():
            path = folder / relative
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
            await atomic_write(path, [text.encode()])
        await self._git.init(folder)
        # Every project has a first commit (a branch, a HEAD), even home, which has no files.
        await self._git.commit(
            folder,
            first_commit,
            author_name=author.name,
            author_email=author.email,
            allow_empty=True,
        )

    async def _find(self, user_id: str, key: str) -> ProjectRecord | None:
        async with self._db.reading() as session:
            return await ProjectRepository(session).find(user_id, key)

    async def _by_id(self, user_id: str, project_id: str) -> ProjectRecord | None:
        async with self._db.reading() as session:
            return await ProjectRepository(session).by_id(user_id, project_id)

    async def locate(self, user_id: str, key: str, field: str = "project") -> Located:
        """The user's project named by id or name, and its folder (which must exist)."""
        key = key.strip()
        if not key:
            raise InvalidArgument.field(field, "is required")
        record = await self._find(user_id, key)
        if record is None:
            raise project_not_found(key)
        return await self._located(user_id, record)

    async def relocate(self, user_id: str, project_id: str) -> Located:
        """The user's project with this id where it lies now, under whatever name it has (a
        write follows its project so when a rename moved it). 404 PROJECT_NOT_FOUND only once
        the project is deleted."""
        record = await self._by_id(user_id, project_id)
        if record is None:
            raise project_not_found(project_id)
        return await self._located(user_id, record)

    async def still_named(self, located: Located) -> bool:
        """Whether the index still names the project as it did when it was located. Asked
        with its place held shared (a write's locks), where no rename or delete of it can be
        under way: the folder at that name is then the project's, and not another project's
        renamed into its old name since (which the folder alone cannot tell)."""
        record = located.project
        current = await self._by_id(record.user_id, record.id)
        return current is not None and current.name == record.name

    async def resolve(self, user_id: str, key: str) -> Resolved:
        """Where a project named by `key` lives, relative to the root (a caller joins it with
        its own: the host's layout is not theirs to know); with no key, the user's own folder
        (made if missing) and no project: not the home project, which only file and git calls
        imply."""
        if not key.strip():
            folder = await self.ensure_user_root(user_id)
            return Resolved(None, folder.relative_to(self._root))
        located = await self.locate(user_id, key, "projectId")
        return Resolved(located.project, located.directory.relative_to(self._root))

    async def locate_or_home(
        self, user_id: str, key: str, author: Callable[[], Awaitable[Author]]
    ) -> Located:
        """The user's project named by `key`; with no key, their home project, made on first
        use (`author` is asked only then: the first commit is theirs)."""
        if key.strip():
            return await self.locate(user_id, key)
        async with self._homes.hold(user_id):
            record = await self._find(user_id, HOME)
            if record is None:
                record = await self._create_home(user_id, await author())
        return await self._located(user_id, record)

    async def _create_home(self, user_id: str, author: Author) -> ProjectRecord:
        """A new home project, or the one another replica has just made."""
        try:
            return await self._create(
                user_id, HOME, HOME_TEMPLATE, {}, author, "Start the home project"
            )
        except AlreadyExists:
            for wait in _HOME_RACE_WAITS:
                record = await self._find(user_id, HOME)
                if record is not None:
                    return record
                await asyncio.sleep(wait)
            raise  # a folder named home that is no project (a terminal can make one)

    async def _located(self, user_id: str, record: ProjectRecord, *, wait: bool = True) -> Located:
        """The project's folder. Missing, it may be a rename or a delete through another
        replica under way (the folder moved, the index not yet committed): with `wait`, once
        that is done the project is looked up again by its id, under its new name, or not
        found; and again if it moved on meanwhile (a second rename under way), PROJECT_MOVES
        times at most."""
        directory = self.user_root(user_id) / record.name
        if await _folder_there(directory):
            return Located(record, directory)
        if not wait:
            raise _folder_missing(record.name)
        for _ in range(PROJECT_MOVES):
            async with self._places.hold(shared=[project_place(directory)]):
                pass  # the rename or the delete that holds it is over
            current = await self._by_id(user_id, record.id)
            if current is None:
                raise project_not_found(record.id)
            if current.name == record.name:
                # Not renamed: unless it is back now, the folder itself is gone (a terminal
                # can do that).
                if await _folder_there(directory):
                    return Located(current, directory)
                raise _folder_missing(current.name)
            record, directory = current, self.user_root(user_id) / current.name
            if await _folder_there(directory):
                return Located(record, directory)
        raise project_kept_moving(record.name)

    @contextlib.asynccontextmanager
    async def _alone(self, user_id: str, key: str) -> AsyncIterator[Located]:
        """The project named by `key`, its place held alone (`project_place`): no write inside
        it is under way on any replica, and none starts until this ends. Looked up again once
        held: a rename or a delete through another replica may have come first."""
        located = await self.locate(user_id, key, "id")
        while True:
            async with self._places.hold(project_place(located.directory)):
                # By `key` again: a project named by its old name is gone once renamed.
                current = await self._find(user_id, key.strip())
                if current is None:
                    raise project_not_found(key.strip())
                if (current.id, current.name) == (located.project.id, located.project.name):
                    yield await self._located(user_id, current, wait=False)
                    return
            located = await self.locate(user_id, key, "id")

    async def page(self, user_id: str, page: Page) -> tuple[list[ProjectRecord], int]:
        async with self._db.reading() as session:
            return await ProjectRepository(session).page(
                user_id, offset=page.offset, limit=page.limit
            )

    async def rename(self, user_id: str, key: str, new_name: str) -> ProjectRecord:
        new_name = clean_project_name(new_name)
        # Its place held alone: a write inside it through any replica lands before (and moves
        # with it) or after (where the project is then), never in a folder made again at
        # the old name.
        async with self._alone(user_id, key) as located:
            record = located.project
            if new_name == record.name:
                return record
            target = located.directory.parent / new_name
            now = self._clock()
            async with self._db.transaction() as session:
                try:
                    await ProjectRepository(session).rename(record.id, new_name, now)
                except NameTaken:
                    raise AlreadyExists(
                        f"a project named {new_name!r} already exists", reason="PROJECT_EXISTS"
                    ) from None
                # Inside the transaction: a folder that cannot move rolls the index back.
                await asyncio.to_thread(_rename_no_replace, located.directory, target)
        return ProjectRecord(record.id, user_id, new_name, record.template, record.created_at, now)

    async def delete(self, user_id: str, key: str) -> None:
        trash = (await self._staging()) / f"deleted-{uuid.uuid4()}"
        # Its place held alone: a write inside it through any replica goes with it or comes
        # after (404), never into a folder made again at its name.
        async with self._alone(user_id, key) as located, self._db.transaction() as session:
            await ProjectRepository(session).remove(located.project.id)
            await asyncio.to_thread(located.directory.rename, trash)
        await asyncio.to_thread(shutil.rmtree, trash, True)
        if self._quotas is not None:
            # Its bytes are free at once (they were counted until the next scan, a minute).
            await self._quotas.forget(located.directory.parent)


async def _folder_there(directory: Path) -> bool:
    """Whether a real folder is at `directory`, not a link a terminal put in its place
    (paths.py checks every path against where the folder must lie, too)."""
    try:
        os.close(await asyncio.to_thread(open_project_folder, directory))
    except FileNotFoundError:
        return False
    return True


def _rename_no_replace(source: Path, target: Path) -> None:
    if target.exists() or target.is_symlink():
        raise AlreadyExists(
            f"a folder named {target.name!r} already exists", reason="PROJECT_EXISTS"
        )
    source.rename(target)
