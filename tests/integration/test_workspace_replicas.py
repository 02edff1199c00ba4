"""Two workspace replicas on one shared volume (issue 15, part 2): writers hammering one file
through both lose no update - each write names the sha it read, and the sha check and the write
are one step across processes (a lock file on the volume), so the loser of a race gets 409
(ABORTED) instead of silently overwriting the winner. Two real servers, one root and one
database, as two pods would share them."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select, update
from stockfolio.workspace.v1 import workspace_pb2

from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.idempotency import IN_FLIGHT
from services.workspace.files import blob_sha
from services.workspace.locks import LOCK_FOLDER, STRIPES, VolumeLocks, project_place
from services.workspace.orm import idempotency_keys, projects, quota_usage
from services.workspace.quota import Usage, measure
from services.workspace.staging import STAGING
from tests.integration.workspace_harness import (
    StartWorkspace,
    User,
    WorkspaceService,
    held_upload,
    moved_as_a_lock_is_asked,
    rename,
    upload,
)
from tests.rpc_errors import reason
from tests.waiting import until

WRITERS = 8
WRITES_EACH = 12
SIZE = 200 * 1024


async def append_line(
    replica: WorkspaceService, project: str, who: tuple[tuple[str, str], ...], line: str
) -> int:
    """Read, add `line`, write back with the sha read; again on a conflict. Returns how many
    conflicts it met."""
    conflicts = 0
    while True:
        read = await replica.stub.GetFile(
            workspace_pb2.GetFileRequest(project=project, path="shared.txt"), metadata=who
        )
        try:
            await replica.stub.UpdateFile(
                workspace_pb2.UpdateFileRequest(
                    project=project,
                    path="shared.txt",
                    content=read.file.content + line + "\n",
                    sha=read.file.sha,
                ),
                metadata=who,
            )
            return conflicts
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.ABORTED, error.details()
            assert "has changed since sha was read" in (error.details() or "")
            conflicts += 1


async def test_writers_on_two_replicas_lose_no_update(start_workspace: StartWorkspace) -> None:
    async with start_workspace() as one, start_workspace() as two:
        ada = await one.user()
        project = await one.project(ada, "race")
        await one.stub.CreateFile(
            workspace_pb2.CreateFileRequest(project=project.id, path="shared.txt", content=""),
            metadata=ada.metadata,
        )

        async def writer(number: int) -> int:
            replica = (one, two)[number % 2]
            conflicts = 0
            for write in range(WRITES_EACH):
                line = f"writer {number} write {write}"
                conflicts += await append_line(replica, project.id, ada.metadata, line)
            return conflicts

        conflicts = await asyncio.gather(*(writer(n) for n in range(WRITERS)))
        final = await two.stub.GetFile(
            workspace_pb2.GetFileRequest(project=project.id, path="shared.txt"),
            metadata=ada.metadata,
        )
        lines = final.file.content.splitlines()
        expected = {f"writer {n} write {w}" for n in range(WRITERS) for w in range(WRITES_EACH)}
        # Every acknowledged write is there, once: none overwrote another.
        assert sorted(lines) == sorted(expected)
        # The writers did race (the losers were told, and tried again).
        assert sum(conflicts) > 0


async def test_a_write_waits_for_a_lock_held_by_another_process(
    start_workspace: StartWorkspace,
) -> None:
    """The lock really is the volume's: held by someone else (here, this test, as another
    replica would hold it), a write waits for it, then goes through."""
    async with start_workspace() as replica:
        ada = await replica.user()
        project = await replica.project(ada, "held")
        created = await replica.stub.CreateFile(
            workspace_pb2.CreateFileRequest(project=project.id, path="a.txt", content="one\n"),
            metadata=ada.metadata,
        )
        folder = replica.root / LOCK_FOLDER
        stripes = sorted(folder.iterdir())
        assert stripes, "the create took no lock file"
        assert len(stripes) <= STRIPES
        # Hold every stripe the volume has so far: the next write of a.txt needs one of them.
        held = [os.open(path, os.O_RDWR) for path in stripes]
        try:
            for descriptor in held:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            update = asyncio.ensure_future(
                replica.stub.UpdateFile(
                    workspace_pb2.UpdateFileRequest(
                        project=project.id, path="a.txt", content="two\n", sha=created.file.sha
                    ),
                    metadata=ada.metadata,
                )
            )
            await asyncio.sleep(0.3)  # the fault's own duration: the lock stays held this long
            assert not update.done()
            assert (replica.root / ada.id / "held" / "a.txt").read_text() == "one\n"
        finally:
            for descriptor in held:
                os.close(descriptor)
        updated = await asyncio.wait_for(update, 10)
        assert updated.file.sha != created.file.sha
        assert (replica.root / ada.id / "held" / "a.txt").read_text() == "two\n"


async def test_a_create_retried_after_its_replica_died_accepts_its_own_file(
    workspace: WorkspaceService, workspace_database_url: str
) -> None:
    """A replica that wrote the file and died before storing its answer leaves the key in
    flight; once that claim lapses, the retry (same key, same request) finds the file it asked
    for and answers as the first attempt would have, instead of FILE_EXISTS. Another request's
    file with other content is still a conflict."""
    ada = await workspace.user()
    project = await workspace.project(ada, "resume")
    keyed = (*ada.metadata, ("idempotency-key", "create-once"))
    request = workspace_pb2.CreateFileRequest(project=project.id, path="a.txt", content="mine\n")
    first = await workspace.stub.CreateFile(request, metadata=keyed)
    # What the dead replica left: the file written, its key's claim in flight and lapsed.
    db = Database(workspace_database_url)
    try:
        async with db.transaction() as tx:
            await tx.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.key == "create-once")
                .values(status=IN_FLIGHT, response=None, locked_until=utc_now() - timedelta(1))
            )
    finally:
        await db.close()
    again = await workspace.stub.CreateFile(request, metadata=keyed)
    assert (again.file.path, again.file.sha) == (first.file.path, first.file.sha)
    other = workspace_pb2.CreateFileRequest(project=project.id, path="a.txt", content="theirs\n")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await workspace.stub.CreateFile(other, metadata=ada.metadata)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def write_file(
    replica: WorkspaceService, who: User, project: str, path: str, *, uploading: bool
) -> str:
    """Upload or create `path` with SIZE zero bytes: "OK" (its answer checked), or the error."""
    try:
        if uploading:
            file = (await upload(replica, who, project, path, SIZE)).file
        else:
            request = workspace_pb2.CreateFileRequest(
                project=project, path=path, content="\0" * SIZE
            )
            file = (await replica.stub.CreateFile(request, metadata=who.metadata)).file
    except grpc.aio.AioRpcError as error:
        return f"{error.code().name}: {error.details()}"
    assert (file.size, file.sha) == (SIZE, blob_sha(b"\0" * SIZE))
    return "OK"


async def delete_after(
    replica: WorkspaceService, who: User, project: str, path: str, delay: float
) -> grpc.StatusCode:
    await asyncio.sleep(delay)
    try:
        await replica.stub.DeleteFile(
            workspace_pb2.DeleteFileRequest(project=project, path=path, recursive=True),
            metadata=who.metadata,
        )
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_a_write_and_a_delete_of_its_path_or_folder_at_once_both_answer_in_one_order(
    start_workspace: StartWorkspace,
) -> None:
    """An upload (or a create) through one replica and a delete of the same path, or of the
    folder it lies in, through the other, at once, many times. The write never answers 404:
    it comes before the delete (whose lock it holds while it writes and answers) or after
    it (its folder made again), and the end state is that order's. Before, an upload whose
    file or folder was deleted just before its rename or its answer answered NOT_FOUND."""
    async with start_workspace() as one, start_workspace() as two:
        ada = await one.user()
        site = await one.project(ada, "site")
        folder = one.root / ada.id / "site"
        timing = random.Random(4)
        writes: list[str] = []
        for round_number in range(48):
            path = "d/photo.bin" if round_number % 2 else "photo.bin"
            deleted = "d" if round_number % 4 == 1 else path
            uploading = round_number % 3 != 2
            written, removed = await asyncio.gather(
                write_file(one, ada, site.id, path, uploading=uploading),
                delete_after(two, ada, site.id, deleted, timing.random() * 0.05),
            )
            writes.append(written)
            there = (folder / path).exists()
            # Deleted first (nothing there yet): the write came after and its file stays.
            assert removed in (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND)
            assert there or removed == grpc.StatusCode.OK
            if there:
                assert (folder / path).read_bytes() == b"\0" * SIZE
                (folder / path).unlink()
        assert writes == ["OK"] * 48
        assert list((one.root / STAGING).iterdir()) == []


# The writes raced against a move of their folder: an upload replacing the folder's file, a
# create of a new file there, an update of the folder's file (with the sha read), an upload of
# a new file there.
MOVE_RACERS = ("upload-over", "create", "update", "upload-new")
OLD = b"old\n"


async def write_in_folder(
    replica: WorkspaceService, who: User, project: str, path: str, kind: str
) -> str:
    """Write SIZE zero bytes to `path` as `kind` says: "OK" (its answer checked), or the
    error's code and reason."""
    new = b"\0" * SIZE
    try:
        if kind.startswith("upload"):
            file = (await upload(replica, who, project, path, SIZE)).file
        elif kind == "create":
            request = workspace_pb2.CreateFileRequest(
                project=project, path=path, content="\0" * SIZE
            )
            file = (await replica.stub.CreateFile(request, metadata=who.metadata)).file
        else:
            changed = workspace_pb2.UpdateFileRequest(
                project=project, path=path, content="\0" * SIZE, sha=blob_sha(OLD)
            )
            file = (await replica.stub.UpdateFile(changed, metadata=who.metadata)).file
    except grpc.aio.AioRpcError as error:
        return f"{error.code().name} {reason(error)}"
    assert (file.size, file.sha) == (SIZE, blob_sha(new))
    return "OK"


async def move_after(
    replica: WorkspaceService, who: User, project: str, path: str, new_path: str, delay: float
) -> str:
    await asyncio.sleep(delay)
    try:
        await replica.stub.MoveFile(
            workspace_pb2.MoveFileRequest(project=project, path=path, new_path=new_path),
            metadata=who.metadata,
        )
    except grpc.aio.AioRpcError as error:
        return f"{error.code().name} {reason(error)}"
    return "OK"


async def recorded_usage(database_url: str, user: str) -> Usage:
    """The user's usage as the replicas share it (what the next quota check starts from)."""
    db = Database(database_url)
    try:
        async with db.reading() as tx:
            row = (await tx.execute(select(quota_usage).where(quota_usage.c.user_id == user))).one()
    finally:
        await db.close()
    return Usage(int(row.bytes), int(row.files))


@contextlib.asynccontextmanager
async def unscanned_replicas(
    start_workspace: StartWorkspace,
) -> AsyncIterator[tuple[WorkspaceService, WorkspaceService]]:
    """Two replicas whose quota scan waits an hour: the usage recorded is only what the writes
    counted, to compare with the disk."""
    settings = {"WORKSPACE_QUOTA_SCAN_INTERVAL": "3600"}
    async with start_workspace(**settings) as one, start_workspace(**settings) as two:
        yield one, two


async def quota_miscount(
    database_url: str, user: str, user_folder: Path, drift: tuple[int, int]
) -> tuple[str | None, tuple[int, int]]:
    """What the quota got wrong in this round alone (not the `drift` earlier rounds left), if
    anything, and the drift from now on."""
    usage, disk = await recorded_usage(database_url, user), measure(user_folder)
    off = (usage.bytes - disk.bytes - drift[0], usage.files - disk.files - drift[1])
    if off == (0, 0):
        return None, drift
    wrong = f"the quota counted {off[0]} bytes and {off[1]} files amiss"
    return wrong, (usage.bytes - disk.bytes, usage.files - disk.files)


def print_rounds(broken: list[str], writes: list[str]) -> None:
    """The rounds that broke (shown with -s), and how the writes answered."""
    print("\n".join(broken) or "every round in one order")
    print("writes:", {w: writes.count(w) for w in set(writes)})


def one_order(kind: str, written: str, folder: Path, old: str, new: str) -> str | None:
    """What is wrong with a round's end state, if it is no single order's: the write before
    the move (its file under the new name, nothing left under the old one) or after it (its
    file alone in the old folder made again; an update then finds no file: 404)."""
    name = "new.bin" if kind in ("create", "upload-new") else "photo.bin"
    replacing = name == "photo.bin"
    before, after = folder / old / name, folder / new / name
    moved = folder / new / "photo.bin"
    if not moved.exists():
        return "the moved folder lost its file"
    if written != "OK":
        if (kind, written) != ("update", "NOT_FOUND FILE_NOT_FOUND"):
            return f"the write answered {written}"
        if (folder / old).exists() or moved.read_bytes() != OLD:
            return f"the update answered {written}, yet it was written"
        return None
    holding = [p for p in (before, after) if p.exists() and p.read_bytes() == b"\0" * SIZE]
    if len(holding) != 1:
        return f"the written file is in {len(holding)} places"
    if holding == [after]:
        if (folder / old).exists():
            return "the write came first, yet the old folder is there"
        return None
    if sorted(os.listdir(folder / old)) != [name]:
        return "the write came after the move, yet the old folder holds more than its file"
    if replacing and kind == "update":
        return "an update wrote a file the move had taken away"
    if moved.read_bytes() != OLD:
        return "the write came after the move, yet the moved file changed"
    return None


async def test_a_write_and_a_move_of_its_folder_at_once_leave_the_file_in_one_place(
    start_workspace: StartWorkspace, workspace_database_url: str
) -> None:
    """A write of a file in folder d<n> through one replica (an upload over its file, a create,
    an update with the sha read, an upload of a new file) and a move of d<n> to e<n> through
    the other, at once, many times. They come in one order: the write first (its file then
    under e<n>, written, and no d<n> left) or the move first (the write makes d<n> again and
    its file alone there; an update finds no file: 404 FILE_NOT_FOUND), and the quota shared
    by the replicas counts exactly what is on disk. Before, a write that took its file's lock
    and then opened its folder after the move answered 404 PATH_NOT_FOUND (an update), or
    made d<n> again beside the moved copy while counting a replaced file (an upload: a file
    uncounted, and the old bytes)."""
    async with unscanned_replicas(start_workspace) as (one, two):
        ada = await one.user()
        site = await one.project(ada, "site")
        user_folder = one.root / ada.id
        folder = user_folder / "site"
        timing = random.Random(9)
        broken: list[str] = []
        writes: list[str] = []
        drift = (0, 0)
        for n in range(48):
            kind = MOVE_RACERS[n % len(MOVE_RACERS)]
            old, new = f"d{n}", f"e{n}"
            await one.stub.CreateFile(
                workspace_pb2.CreateFileRequest(
                    project=site.id, path=f"{old}/photo.bin", content=OLD.decode()
                ),
                metadata=ada.metadata,
            )
            name = "new.bin" if kind in ("create", "upload-new") else "photo.bin"
            written, moved = await asyncio.gather(
                write_in_folder(one, ada, site.id, f"{old}/{name}", kind),
                move_after(two, ada, site.id, old, new, timing.random() * 0.015),
            )
            written_first = (folder / new / name).exists() and written == "OK"
            writes.append(f"{written} ({'before' if written_first else 'after'} the move)")
            wrong = "the move answered " + moved if moved != "OK" else None
            wrong = wrong or one_order(kind, written, folder, old, new)
            miscounted, drift = await quota_miscount(
                workspace_database_url, ada.id, user_folder, drift
            )
            wrong = wrong or miscounted
            if wrong is not None:
                broken.append(f"round {n} ({kind}): {wrong}")
        print_rounds(broken, writes)
        assert broken == []
        assert list((one.root / STAGING).iterdir()) == []


async def test_a_move_of_a_folder_waits_for_an_upload_under_way_inside_it(
    start_workspace: StartWorkspace, workspace_database_url: str
) -> None:
    """An upload into d/ through one replica has sent every byte, its call still open; a move
    of d/ to e/ through the other waits for it, then carries its file: one file, under the new
    name, with every byte, counted once."""
    async with unscanned_replicas(start_workspace) as (one, two):
        ada = await one.user()
        site = await one.project(ada, "site")
        user_folder = one.root / ada.id
        folder = user_folder / "site"
        await one.stub.CreateFile(
            workspace_pb2.CreateFileRequest(project=site.id, path="d/notes.txt", content="hi"),
            metadata=ada.metadata,
        )
        uploading, hold = await held_upload(one, ada, site.id, "d/photo.bin", SIZE)
        move = asyncio.ensure_future(
            two.stub.MoveFile(
                workspace_pb2.MoveFileRequest(project=site.id, path="d", new_path="e"),
                metadata=ada.metadata,
            )
        )
        await asyncio.sleep(0.3)
        assert not move.done()
        assert (folder / "d").is_dir() and not (folder / "e").exists()
        hold.set()
        uploaded, moved = await asyncio.gather(uploading, move)

        assert (uploaded.file.path, uploaded.file.size) == ("d/photo.bin", SIZE)
        assert (moved.entry.path, moved.entry.type) == ("e", workspace_pb2.ENTRY_TYPE_DIRECTORY)
        assert sorted(os.listdir(folder / "e")) == ["notes.txt", "photo.bin"]
        assert (folder / "e" / "photo.bin").read_bytes() == b"\0" * SIZE
        assert not (folder / "d").exists()
        assert await recorded_usage(workspace_database_url, ada.id) == measure(user_folder)


async def write_after(
    replica: WorkspaceService, who: User, project: str, path: str, kind: str, delay: float
) -> str:
    await asyncio.sleep(delay)
    return await write_in_folder(replica, who, project, path, kind)


async def change_project_after(
    replica: WorkspaceService, who: User, project: str, new_name: str | None, delay: float
) -> str:
    """Rename the project to `new_name` (None: delete it) after `delay`: "OK", or the error."""
    await asyncio.sleep(delay)
    try:
        if new_name is None:
            await replica.stub.DeleteProject(
                workspace_pb2.DeleteProjectRequest(id=project), metadata=who.metadata
            )
        else:
            await replica.stub.RenameProject(
                workspace_pb2.RenameProjectRequest(id=project, name=new_name),
                metadata=who.metadata,
            )
    except grpc.aio.AioRpcError as error:
        return f"{error.code().name} {reason(error)}"
    return "OK"


async def marked_for_a_scan(database_url: str, user: str) -> bool:
    """Whether the user's usage is marked to be measured at the next check (after a delete)."""
    db = Database(database_url)
    try:
        async with db.reading() as tx:
            query = select(quota_usage.c.scanned_at).where(quota_usage.c.user_id == user)
            scanned_at = (await tx.execute(query)).scalar_one()
    finally:
        await db.close()
    return scanned_at is None


def one_project_order(
    kind: str, written: str, user_folder: Path, old: str, new: str | None
) -> str | None:
    """What is wrong with a round's end state, if it is no single order's. Renamed: the write
    lands in the project under its new name, before the rename (and moves with it) or after
    (the project, named by id, is found where it is then), and nothing is left at the old
    name. Deleted: the write came before (and went with the project) or after (404
    PROJECT_NOT_FOUND), and nothing is left at the old name either way."""
    if (user_folder / old).exists():
        return f"a folder is left at the old name ({sorted(os.listdir(user_folder / old))})"
    if new is None:
        if written not in ("OK", "NOT_FOUND PROJECT_NOT_FOUND"):
            return f"the write answered {written}"
        return None
    if written != "OK":
        return f"the write answered {written}"
    name = "new.bin" if kind in ("create", "upload-new") else "photo.bin"
    folder = user_folder / new / "d"
    if not (folder / name).exists() or (folder / name).read_bytes() != b"\0" * SIZE:
        return "the written file is not in the renamed project"
    if name == "new.bin" and (folder / "photo.bin").read_bytes() != OLD:
        return "the renamed project's other file changed"
    return None


async def test_a_write_and_a_rename_or_delete_of_its_project_at_once_end_in_one_order(
    start_workspace: StartWorkspace, workspace_database_url: str
) -> None:
    """A write of a file in project p<n> (named by id) through one replica (an upload over its
    file, a create, an update with the sha read, an upload of a new file) and a rename of
    p<n> to q<n>, or its delete, through the other, at once, many times. They come in one
    order: renamed, the write lands in q<n> either way (before: it moved with the project;
    after: the project is found under its new name); deleted, the write went with it or
    answers 404 PROJECT_NOT_FOUND. Never a folder left at p<n>, never another answer, and the
    quota shared by the replicas counts exactly what is on disk."""
    async with unscanned_replicas(start_workspace) as (one, two):
        ada = await one.user()
        user_folder = one.root / ada.id
        timing = random.Random(11)
        broken: list[str] = []
        writes: list[str] = []
        drift = (0, 0)
        for n in range(48):
            kind = MOVE_RACERS[(n // 2) % len(MOVE_RACERS)]
            old, new = f"p{n}", (f"q{n}" if n % 2 == 0 else None)
            project = (await one.project(ada, old)).id
            await one.stub.CreateFile(
                workspace_pb2.CreateFileRequest(
                    project=project, path="d/photo.bin", content=OLD.decode()
                ),
                metadata=ada.metadata,
            )
            name = "new.bin" if kind in ("create", "upload-new") else "photo.bin"
            written, changed = await asyncio.gather(
                write_after(one, ada, project, f"d/{name}", kind, timing.random() * 0.01),
                change_project_after(two, ada, project, new, timing.random() * 0.02),
            )
            writes.append(f"{written} ({'rename' if new else 'delete'})")
            wrong: str | None = None
            if changed != "OK":
                wrong = f"the {'rename' if new else 'delete'} answered {changed}"
            wrong = wrong or one_project_order(kind, written, user_folder, old, new)
            if (user_folder / old).exists():  # the next rounds start from a clean slate
                await asyncio.to_thread(shutil.rmtree, user_folder / old)
            if await marked_for_a_scan(workspace_database_url, ada.id):
                # A delete marks the usage: the next check measures the disk (drift gone too).
                drift = (0, 0)
            else:
                miscounted, drift = await quota_miscount(
                    workspace_database_url, ada.id, user_folder, drift
                )
                wrong = wrong or miscounted
            if wrong is not None:
                broken.append(f"round {n} ({kind}, {'rename' if new else 'delete'}): {wrong}")
        print_rounds(broken, writes)
        assert broken == []
        assert list((one.root / STAGING).iterdir()) == []


async def test_a_rename_or_delete_of_a_project_waits_for_an_upload_under_way_inside_it(
    start_workspace: StartWorkspace, workspace_database_url: str
) -> None:
    """An upload into project site through one replica has sent every byte, its call still
    open; a rename of site to web through the other waits for it, then carries its file; a
    delete of web waits the same way for the next one, which goes with the project; and an
    upload after that answers 404 PROJECT_NOT_FOUND, making no folder."""
    async with unscanned_replicas(start_workspace) as (one, two):
        ada = await one.user()
        site = await one.project(ada, "site")
        user_folder = one.root / ada.id
        uploading, hold = await held_upload(one, ada, site.id, "d/photo.bin", SIZE)
        rename = asyncio.ensure_future(
            two.stub.RenameProject(
                workspace_pb2.RenameProjectRequest(id=site.id, name="web"), metadata=ada.metadata
            )
        )
        await asyncio.sleep(0.3)
        assert not rename.done()
        assert (user_folder / "site").is_dir() and not (user_folder / "web").exists()
        hold.set()
        uploaded, renamed = await asyncio.gather(uploading, rename)
        assert (uploaded.file.path, uploaded.file.size) == ("d/photo.bin", SIZE)
        assert renamed.project.name == "web"
        assert (user_folder / "web" / "d" / "photo.bin").read_bytes() == b"\0" * SIZE
        assert not (user_folder / "site").exists()
        assert await recorded_usage(workspace_database_url, ada.id) == measure(user_folder)

        uploading, hold = await held_upload(one, ada, site.id, "e.bin", SIZE)
        delete = asyncio.ensure_future(
            two.stub.DeleteProject(
                workspace_pb2.DeleteProjectRequest(id=site.id), metadata=ada.metadata
            )
        )
        await asyncio.sleep(0.3)
        assert not delete.done()
        hold.set()
        uploaded, _ = await asyncio.gather(uploading, delete)
        assert (uploaded.file.path, uploaded.file.size) == ("e.bin", SIZE)
        assert sorted(os.listdir(user_folder)) == []
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await upload(one, ada, site.id, "f.bin", SIZE)
        assert (gone.value.code(), reason(gone.value)) == (
            grpc.StatusCode.NOT_FOUND,
            "PROJECT_NOT_FOUND",
        )
        assert sorted(os.listdir(user_folder)) == []
        assert list((one.root / STAGING).iterdir()) == []


async def test_a_rename_and_a_delete_by_the_old_name_at_once_come_in_one_order(
    start_workspace: StartWorkspace,
) -> None:
    """A rename of p<n> (by id) to q<n> through one replica and a delete of "p<n>" (by name)
    through the other, at once, many times: the delete first (the rename answers 404 and
    nothing is left) or the rename first (the delete finds no project named p<n>: 404, and
    q<n> stays). Never both OK: a delete of p<n> never deletes the project renamed q<n>."""
    async with start_workspace() as one, start_workspace() as two:
        ada = await one.user()
        user_folder = one.root / ada.id
        timing = random.Random(5)
        broken: list[str] = []
        for n in range(24):
            project = (await one.project(ada, f"p{n}")).id
            renamed, deleted = await asyncio.gather(
                change_project_after(one, ada, project, f"q{n}", timing.random() * 0.01),
                change_project_after(two, ada, f"p{n}", None, timing.random() * 0.01),
            )
            left = sorted(os.listdir(user_folder))
            if (renamed, deleted, left) not in (
                ("NOT_FOUND PROJECT_NOT_FOUND", "OK", []),
                ("OK", "NOT_FOUND PROJECT_NOT_FOUND", [f"q{n}"]),
            ):
                broken.append(f"round {n}: rename {renamed}, delete {deleted}, left {left}")
            for name in left:
                await asyncio.to_thread(shutil.rmtree, user_folder / name)
        assert broken == []


def moved_as_the_write_comes_to_its_lock(
    monkeypatch: pytest.MonkeyPatch, name: str, moves: Callable[[], Awaitable[None]]
) -> None:
    """The first write of a file called `name`, its project looked up and none of its locks
    taken yet, waits for `moves` first: renames or deletes of projects through the other
    replica landing while the write waits for its project's lock."""
    moved_as_a_lock_is_asked(monkeypatch, lambda key: Path(key).name == name, moves)


@pytest.mark.parametrize("by", ["id", "name"])
async def test_a_write_lands_in_its_project_under_its_newest_name_after_two_renames(
    start_workspace: StartWorkspace, monkeypatch: pytest.MonkeyPatch, by: str
) -> None:
    """A create in project a (named by id, or by name) through one replica has looked a up;
    while it waits for the project's lock, two renames through the other replica move a to b,
    then to c. The write lands in c, the project it was meant for, under its newest name.
    Before, it looked the project up again by the key it was given: by name, 404
    PROJECT_NOT_FOUND."""
    async with start_workspace() as one, start_workspace() as two:
        ada = await one.user()
        project = (await one.project(ada, "a")).id
        user_folder = one.root / ada.id

        async def renames() -> None:
            await rename(two, ada, project, "b")
            await rename(two, ada, project, "c")

        moved_as_the_write_comes_to_its_lock(monkeypatch, "written.txt", renames)
        created = await one.stub.CreateFile(
            workspace_pb2.CreateFileRequest(
                project=project if by == "id" else "a", path="written.txt", content="mine\n"
            ),
            metadata=ada.metadata,
        )
        assert (created.file.project, created.file.path) == (project, "written.txt")
        assert (user_folder / "c" / "written.txt").read_text() == "mine\n"
        assert sorted(os.listdir(user_folder)) == ["c"]


@pytest.mark.parametrize("by", ["id", "name"])
async def test_a_write_never_lands_in_a_project_renamed_into_its_projects_old_name(
    start_workspace: StartWorkspace, monkeypatch: pytest.MonkeyPatch, by: str
) -> None:
    """An upload into project a (named by id, or by name) through one replica has looked a
    up; while it waits for the project's lock, a is renamed x and project b renamed a through
    the other replica. The upload lands in x, the project it was meant for, with every byte;
    b, now named a, is untouched. Before, it wrote into b: a folder was there at a's old name
    once its locks were held."""
    async with start_workspace() as one, start_workspace() as two:
        ada = await one.user()
        meant = (await one.project(ada, "a")).id
        other = (await one.project(ada, "b")).id
        user_folder = one.root / ada.id

        async def renames() -> None:
            await rename(two, ada, meant, "x")
            await rename(two, ada, other, "a")

        moved_as_the_write_comes_to_its_lock(monkeypatch, "written.bin", renames)
        uploaded = await upload(one, ada, meant if by == "id" else "a", "written.bin", SIZE)
        assert (uploaded.file.project, uploaded.file.size) == (meant, SIZE)
        assert (user_folder / "x" / "written.bin").read_bytes() == b"\0" * SIZE
        assert not (user_folder / "a" / "written.bin").exists()
        listed = await one.stub.ListProjects(
            workspace_pb2.ListProjectsRequest(), metadata=ada.metadata
        )
        assert sorted((p.id, p.name) for p in listed.projects) == sorted(
            [(meant, "x"), (other, "a")]
        )


async def test_a_write_whose_project_is_renamed_then_deleted_while_it_waits_answers_404(
    start_workspace: StartWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create in project a through one replica has looked it up; while it waits for the
    project's lock, a is renamed b, then deleted, through the other replica. The write answers
    404 PROJECT_NOT_FOUND (the one case it does) and makes no folder."""
    async with start_workspace() as one, start_workspace() as two:
        ada = await one.user()
        project = (await one.project(ada, "a")).id
        user_folder = one.root / ada.id

        async def rename_then_delete() -> None:
            await rename(two, ada, project, "b")
            await two.stub.DeleteProject(
                workspace_pb2.DeleteProjectRequest(id=project), metadata=ada.metadata
            )

        moved_as_the_write_comes_to_its_lock(monkeypatch, "written.txt", rename_then_delete)
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await one.stub.CreateFile(
                workspace_pb2.CreateFileRequest(project=project, path="written.txt", content="x"),
                metadata=ada.metadata,
            )
        assert (gone.value.code(), reason(gone.value)) == (
            grpc.StatusCode.NOT_FOUND,
            "PROJECT_NOT_FOUND",
        )
        assert os.listdir(user_folder) == []


def places_waited_for(monkeypatch: pytest.MonkeyPatch, test_locks: VolumeLocks) -> list[str]:
    """The keys the services' locks are asked to hold shared (a look-up waiting for a rename
    of its project under way asks for the project's place), as they are asked: watched, not
    changed. `test_locks`, the test's own, are left out."""
    asked: list[str] = []
    real_hold = VolumeLocks.hold

    def hold(
        self: VolumeLocks, *keys: str, shared: Iterable[str] = ()
    ) -> contextlib.AbstractAsyncContextManager[None]:
        shared = list(shared)
        if self is not test_locks:
            asked.extend(shared)
        return real_hold(self, *keys, shared=shared)

    monkeypatch.setattr(VolumeLocks, "hold", hold)
    return asked


async def name_in_the_index(database_url: str, project: str, name: str) -> None:
    """A rename's index change, committed (the folder is the caller's to move)."""
    db = Database(database_url)
    try:
        async with db.transaction() as tx:
            await tx.execute(update(projects).where(projects.c.id == project).values(name=name))
    finally:
        await db.close()


async def test_a_write_follows_its_project_through_two_renames_under_way_as_it_looks_it_up(
    start_workspace: StartWorkspace, workspace_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create in project a (by id) finds a's folder missing: a rename to b is under way (the
    folder moved, the index not yet changed), and the look-up waits for it. When it is done,
    a rename to c is under way in turn (the index says b, the folder is at c): the look-up
    waits for that one too, and the write lands in c. Before, it followed one rename only and
    answered 404 PROJECT_NOT_FOUND. The renames are made here by hand, as another replica
    makes them: the project's place held alone around the index change and the folder's
    move."""
    async with start_workspace() as one:
        ada = await one.user()
        project = (await one.project(ada, "a")).id
        user_folder = one.root / ada.id
        other_replica = VolumeLocks(one.root / LOCK_FOLDER)
        waited = places_waited_for(monkeypatch, other_replica)
        first, second = project_place(user_folder / "a"), ""
        # A name whose place has a lock file of its own: held together with a's, a place
        # sharing a's would wait for this very test.
        for b in (f"b{n}" for n in range(100)):
            second = project_place(user_folder / b)
            if other_replica._stripe(second) != other_replica._stripe(first):
                break
        async with contextlib.AsyncExitStack() as renaming_to_c:
            async with other_replica.hold(first):
                (user_folder / "a").rename(user_folder / b)
                create = asyncio.ensure_future(
                    one.stub.CreateFile(
                        workspace_pb2.CreateFileRequest(
                            project=project, path="written.txt", content="mine\n"
                        ),
                        metadata=ada.metadata,
                    )
                )
                await until(lambda: first in waited, "the look-up waiting for the rename to b")
                await renaming_to_c.enter_async_context(other_replica.hold(second))
                await name_in_the_index(workspace_database_url, project, b)
                (user_folder / b).rename(user_folder / "c")
            await until(
                lambda: create.done() or second in waited,
                "the look-up answering, or waiting for the rename to c",
            )
            await name_in_the_index(workspace_database_url, project, "c")
        created = await create
        assert (created.file.project, created.file.path) == (project, "written.txt")
        assert (user_folder / "c" / "written.txt").read_text() == "mine\n"
        assert sorted(os.listdir(user_folder)) == ["c"]
