"""A user's own terminal against the workspace service's file and git routes, as an attacker
would go about it. The terminal's /workspace is the user's folder, writable, so it can swap a
project folder (or a folder inside one) for a link, race a swap against a call, or make a FIFO;
here plain shell commands and a renameat2 loop on the host stand in for it (the review ran the
same commands in the real sandbox). Each case is the attack end to end through the real
workspace service: the service must refuse, and touch nothing outside the project. SQLite only:
the storage engine plays no part here."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import grpc
import pytest
from stockfolio.workspace.v1 import workspace_pb2

from tests.conftest import token_environment
from tests.integration.workspace_harness import WorkspaceService, put_decoy, shell, swapping

W = workspace_pb2


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


def host(path: Path | str) -> str:
    """A host path as a path relative to `/`: what a project that is a link to `/` would
    serve it as."""
    return str(Path(path).resolve().relative_to("/"))


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    return raised.value


async def test_a_project_folder_swapped_for_a_link_to_the_root_opens_nothing(
    workspace: WorkspaceService,
) -> None:
    eve, project, folder = await workspace.user_with_project("p")
    _, _, bob_folder = await workspace.user_with_project("private")
    (bob_folder / "diary.txt").write_text("bob's secret\n")
    await shell(folder, "git init -q . && echo mine > notes.txt")
    # Eve, in her terminal: her project folder becomes a link to the host's root.
    await shell(folder.parent, "mv p p.real && ln -s / p")

    key_file = token_environment("users")["TOKEN_PRIVATE_KEY_FILE"]
    planted = bob_folder / "planted.txt"
    attempts = {
        "read another user's file": workspace.stub.GetFile(
            W.GetFileRequest(project=project.id, path=host(bob_folder / "diary.txt")),
            metadata=eve.metadata,
        ),
        "read the signing key": workspace.stub.GetFile(
            W.GetFileRequest(project=project.id, path=host(key_file)), metadata=eve.metadata
        ),
        "write into another user's project": workspace.stub.CreateFile(
            W.CreateFileRequest(project=project.id, path=host(planted), content="eve\n"),
            metadata=eve.metadata,
        ),
        "list every user": workspace.stub.ListFiles(
            W.ListFilesRequest(project=project.id, path=host(workspace.root)),
            metadata=eve.metadata,
        ),
        "run git on the host's root": workspace.stub.GitStatus(
            W.GitStatusRequest(project=project.id), metadata=eve.metadata
        ),
    }
    for what, call in attempts.items():
        error = await refused(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, (what, error.details())
        assert "is not a folder (a link?)" in (error.details() or ""), what
    assert not planted.exists()
    assert (bob_folder / "diary.txt").read_text() == "bob's secret\n"

    # Put back, the project serves again.
    await shell(folder.parent, "rm p && mv p.real p")
    back = await workspace.stub.GetFile(
        W.GetFileRequest(project=project.id, path="notes.txt"), metadata=eve.metadata
    )
    assert back.file.content == "mine\n"


async def test_a_move_racing_a_folder_swapped_for_a_link_takes_nothing_from_outside(
    workspace: WorkspaceService,
) -> None:
    eve, project, folder = await workspace.user_with_project("p")
    bob, _, bob_folder = await workspace.user_with_project("private")
    (bob_folder / "diary.txt").write_text("bob's secret\n")
    # A real folder `a` holding a decoy, and `b`, a link to Bob's project; then the swapper.
    await shell(folder, f"mkdir a && echo decoy > a/diary.txt && ln -s ../../{bob.id}/private b")
    moved = 0
    async with swapping(folder):
        for attempt in range(200):
            with contextlib.suppress(grpc.aio.AioRpcError):  # refused when it caught the link
                await workspace.stub.MoveFile(
                    W.MoveFileRequest(
                        project=project.id, path="a/diary.txt", new_path=f"loot{attempt}.txt"
                    ),
                    metadata=eve.metadata,
                )
                moved += 1
            if not (bob_folder / "diary.txt").exists():
                break
            put_decoy(folder)  # back wherever the real folder is now
    assert (bob_folder / "diary.txt").read_text() == "bob's secret\n"
    assert [p.read_text() for p in folder.glob("loot*.txt")] == ["decoy\n"] * moved
    assert moved > 0  # the race was run: some moves found the real folder


async def test_a_deletion_racing_a_folder_swapped_for_a_link_deletes_nothing_outside(
    workspace: WorkspaceService,
) -> None:
    eve, project, folder = await workspace.user_with_project("p")
    bob, _, bob_folder = await workspace.user_with_project("private")
    await shell(folder, f"mkdir a && ln -s ../../{bob.id}/private b")
    async with swapping(folder):
        for attempt in range(200):
            (bob_folder / "diary.txt").write_text("bob's secret\n")
            put_decoy(folder)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await workspace.stub.DeleteFile(
                    W.DeleteFileRequest(project=project.id, path="a/diary.txt"),
                    metadata=eve.metadata,
                )
            assert (bob_folder / "diary.txt").exists(), f"Bob's diary deleted (try {attempt})"


async def test_reading_a_fifo_is_refused_at_once_and_other_users_are_still_served(
    workspace: WorkspaceService,
) -> None:
    eve, project, folder = await workspace.user_with_project("p")
    bob, bobs, _ = await workspace.user_with_project("b")
    await shell(folder, "mkfifo pipe && echo first > notes.txt")

    async def read_pipe() -> grpc.aio.AioRpcError:
        return await refused(
            workspace.stub.GetFile(
                W.GetFileRequest(project=project.id, path="pipe"), metadata=eve.metadata, timeout=5
            )
        )

    try:
        # More than the default executor's threads (min(32, cores + 4)), all at once.
        errors = await asyncio.gather(*(read_pipe() for _ in range(40)))
        assert {e.code() for e in errors} == {grpc.StatusCode.INVALID_ARGUMENT}
        assert "is not a regular file" in (errors[0].details() or "")
        download = workspace.stub.DownloadFile(
            W.DownloadFileRequest(project=project.id, path="pipe"), metadata=eve.metadata
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in download:
                pass
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # A write whose sha check would read it: refused the same way.
        error = await refused(
            workspace.stub.UpdateFile(
                W.UpdateFileRequest(project=project.id, path="pipe", content="x", sha="0" * 40),
                metadata=eve.metadata,
                timeout=5,
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        bobs_file = await workspace.stub.ListFiles(
            W.ListFilesRequest(project=bobs.id), metadata=bob.metadata, timeout=5
        )
        assert bobs_file is not None
    finally:
        with contextlib.suppress(OSError):  # release any reader left waiting (ENXIO: none)
            os.close(os.open(folder / "pipe", os.O_WRONLY | os.O_NONBLOCK))
