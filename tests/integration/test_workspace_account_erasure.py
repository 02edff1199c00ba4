"""A deleted account's projects in the workspace service: erased by the service's follower of
the users service's deletions soon after, on SQLite and PostgreSQL: the project index, the
quota state, kept Idempotency-Key responses, and the folder on disk with every project and its
git data, without following a link planted there into another user's folder, which stays
whole, as do that user's rows; erasing twice is harmless."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from sqlalchemy import func, select
from stockfolio.users.v1 import users_pb2
from stockfolio.workspace.v1 import workspace_pb2 as pb

from services.runtime.db import Database
from services.workspace.erasure import AccountErasure
from services.workspace.orm import idempotency_keys, projects, quota_usage
from tests.integration.workspace_harness import PASSWORD, StartWorkspace, User, WorkspaceService
from tests.waiting import until_async

TABLES = (projects, idempotency_keys, quota_usage)


async def work(ws: WorkspaceService, who: User) -> Path:
    """A project with a committed file (created with a key), and the user's home project with
    a file; the user's folder."""
    await ws.stub.CreateProject(
        pb.CreateProjectRequest(name="notes", template="empty"),
        metadata=(*who.metadata, ("idempotency-key", "first-project")),
    )
    await ws.stub.CreateFile(
        pb.CreateFileRequest(project="notes", path="plan.md", content="# Plan\n"),
        metadata=who.metadata,
    )
    await ws.stub.GitCommit(
        pb.GitCommitRequest(project="notes", message="Plan"), metadata=who.metadata
    )
    await ws.stub.CreateFile(
        pb.CreateFileRequest(path="scratch.txt", content="home\n"), metadata=who.metadata
    )
    return ws.root / who.id


async def rows_of(db: Database, user_id: str) -> dict[str, int]:
    counted: dict[str, int] = {}
    async with db.reading() as session:
        for table in TABLES:
            query = select(func.count()).select_from(table).where(table.c.user_id == user_id)
            counted[table.name] = int((await session.execute(query)).scalar_one())
    return counted


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (links not followed) and its bytes."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = Path(parent) / name
            if not path.is_symlink():
                found[str(path.relative_to(folder))] = path.read_bytes()
    return found


async def test_a_deleted_accounts_projects_and_folder_are_erased_and_another_users_kept(
    start_workspace: StartWorkspace,
) -> None:
    async with start_workspace(ACCOUNT_PURGE_INTERVAL="0.1") as ws:
        await ws.user()  # the first account: the admin, who stays
        ann, bob = await ws.user(), await ws.user()
        ann_folder, bob_folder = await work(ws, ann), await work(ws, bob)
        # What a terminal could leave in the user's folder: links out of it, one into
        # another user's project, one to the root of the file system.
        (ann_folder / "notes" / "to-bob").symlink_to(bob_folder / "notes")
        (ann_folder / "everything").symlink_to("/")
        assert (ann_folder / "notes" / ".git").is_dir()
        bob_files = files_under(bob_folder)
        assert "notes/plan.md" in bob_files and "home/scratch.txt" in bob_files
        db = Database(ws.config.database_url)
        try:
            assert all((await rows_of(db, ann.id)).values())
            kept = await rows_of(db, bob.id)
            assert all(kept.values()), kept
            await ws.users.DeleteUser(
                users_pb2.DeleteUserRequest(id=ann.id, current_password=PASSWORD),
                metadata=ann.metadata,
            )

            def on_disk() -> list[str]:
                """The user's folder, and what of it is still being removed, moved aside."""
                staged = [e.name for e in (ws.root / ".staging").iterdir()]
                here = [ann.id] if os.path.lexists(ann_folder) else []
                return here + [name for name in staged if name.startswith("erased-")]

            async def erased() -> bool:
                rows = await rows_of(db, ann.id)
                return not any(rows.values()) and not await asyncio.to_thread(on_disk)

            await until_async(erased, "the deleted account's projects and folder", within=20)
            assert files_under(bob_folder) == bob_files, "nothing followed through the link"
            assert await rows_of(db, bob.id) == kept
            listed = await ws.stub.ListProjects(pb.ListProjectsRequest(), metadata=bob.metadata)
            assert sorted(p.name for p in listed.projects) == ["home", "notes"]
            await AccountErasure(db, ws.root).erase(ann.id)  # again: nothing left, no error
            assert files_under(bob_folder) == bob_files
        finally:
            await db.close()


async def test_an_id_that_names_no_folder_erases_rows_only(
    start_workspace: StartWorkspace,
) -> None:
    """Ids are the users service's UUIDs; anything else (`..`, a dot name) never names a
    folder under the root, so nothing on disk is touched for it."""
    async with start_workspace() as ws:
        db = Database(ws.config.database_url)
        try:
            ws.root.mkdir(parents=True, exist_ok=True)
            (ws.root / ".locks").mkdir(exist_ok=True)
            outside = sorted(os.listdir(ws.root.parent))
            for odd in ("..", ".locks", "", "a/b"):
                await AccountErasure(db, ws.root).erase(odd)
            assert sorted(os.listdir(ws.root.parent)) == outside
            assert (ws.root / ".locks").is_dir()
        finally:
            await db.close()
