"""Files through the real workspace service over gRPC: listing, reading with a sha, writes that
conflict on a stale sha, moves and deletes, path safety (`..`, absolute paths, percent-encoded
traversal, NUL bytes, symlinks out), streamed uploads and downloads, atomic writes that a failed
or cancelled upload never half-does, and watching changes made from outside.

The services run on SQLite only here: what is tested is the file system side, which does not
depend on the storage engine (test_workspace_projects.py covers both engines).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.api import httpbody_pb2
from stockfolio.workspace.v1 import workspace_pb2

from tests.integration.workspace_harness import (
    User,
    WorkspaceService,
    shell,
)
from tests.rpc_errors import error_metadata, expect_error, fields, reason, violations

W = workspace_pb2
MB = 1024 * 1024


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


def hash_object(folder: Path, path: str) -> str:
    """What git itself says the file's blob sha is."""
    done = subprocess.run(["git", "hash-object", path], cwd=folder, capture_output=True, text=True)
    return done.stdout.strip()


def git_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


# --- listing and reading --------------------------------------------------------------------


async def test_a_folder_is_listed_folders_first_then_by_name_paginated(
    workspace: WorkspaceService,
) -> None:
    ada, project, folder = await workspace.user_with_project("demo")
    (folder / "src").mkdir()
    (folder / "b.txt").write_text("bb")
    (folder / "a.txt").write_text("a")

    first = await workspace.stub.ListFiles(
        W.ListFilesRequest(project=project.id, limit=3), metadata=ada.metadata
    )
    assert [(e.name, e.type, e.path) for e in first.entries] == [
        ("src", W.ENTRY_TYPE_DIRECTORY, "src"),
        (".gitignore", W.ENTRY_TYPE_FILE, ".gitignore"),
        ("README.md", W.ENTRY_TYPE_FILE, "README.md"),
    ]
    assert (first.pagination.total, first.pagination.total_pages) == (5, 2)
    second = await workspace.stub.ListFiles(
        W.ListFilesRequest(project="demo", page=2, limit=3), metadata=ada.metadata
    )
    assert [(e.name, e.size) for e in second.entries] == [("a.txt", 1), ("b.txt", 2)]
    assert second.entries[0].modified_at.seconds > 0


async def test_a_file_is_read_as_text_with_its_git_blob_sha(workspace: WorkspaceService) -> None:
    ada, project, folder = await workspace.user_with_project("demo")
    (folder / "docs").mkdir()
    (folder / "docs" / "a.md").write_text("héllo\n")
    (folder / "blob.bin").write_bytes(b"\xff\x00\xfe")

    got = await workspace.stub.GetFile(
        W.GetFileRequest(project=project.id, path="docs/a.md"), metadata=ada.metadata
    )
    data = "héllo\n".encode()
    assert (got.file.path, got.file.content, got.file.encoding) == ("docs/a.md", "héllo\n", "utf-8")
    assert (got.file.sha, got.file.size) == (git_sha(data), len(data))
    assert got.file.sha == hash_object(folder, "docs/a.md")

    binary = await workspace.stub.GetFile(
        W.GetFileRequest(project=project.id, path="blob.bin"), metadata=ada.metadata
    )
    assert (binary.file.encoding, binary.file.content) == ("base64", "/wD+")


async def test_content_that_is_not_base64_is_422_whatever_it_holds(
    workspace: WorkspaceService,
) -> None:
    """Found by the fuzzer: a non-ASCII character (here one outside the BMP) in base64 content
    made the decoder raise before it looked at the alphabet, which was a 500."""
    ada, project, folder = await workspace.user_with_project("demo")
    for content in ("\U000c6d68", "not base64!", "é"):
        error = await expect_error(
            workspace.stub.CreateFile(
                W.CreateFileRequest(
                    project=project.id, path="x.bin", content=content, encoding=" BaSe64 "
                ),
                metadata=ada.metadata,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert violations(error) == [("content", "is not valid base64")]
    assert not (folder / "x.bin").exists()


async def test_unknown_projects_and_files_are_not_found(workspace: WorkspaceService) -> None:
    ada, project, _ = await workspace.user_with_project("demo")
    missing = await expect_error(
        workspace.stub.GetFile(
            W.GetFileRequest(project=project.id, path="nope.txt"), metadata=ada.metadata
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert reason(missing) == "FILE_NOT_FOUND"
    no_project = await expect_error(
        workspace.stub.GetFile(W.GetFileRequest(project="ghost", path="a"), metadata=ada.metadata),
        grpc.StatusCode.NOT_FOUND,
    )
    assert reason(no_project) == "PROJECT_NOT_FOUND"


# --- writing --------------------------------------------------------------------------------


async def test_create_update_with_the_sha_and_a_stale_sha_is_a_conflict_naming_the_current(
    workspace: WorkspaceService,
) -> None:
    ada, project, folder = await workspace.user_with_project("demo")
    created = await workspace.stub.CreateFile(
        W.CreateFileRequest(project=project.id, path="notes/todo.md", content="one\n"),
        metadata=ada.metadata,
    )
    assert (created.file.path, created.file.sha) == ("notes/todo.md", git_sha(b"one\n"))
    assert (folder / "notes" / "todo.md").read_text() == "one\n"

    updated = await workspace.stub.UpdateFile(
        W.UpdateFileRequest(
            project=project.id, path="notes/todo.md", content="two\n", sha=created.file.sha
        ),
        metadata=ada.metadata,
    )
    assert updated.file.sha == git_sha(b"two\n")

    stale = await expect_error(
        workspace.stub.UpdateFile(
            W.UpdateFileRequest(
                project=project.id, path="notes/todo.md", content="three\n", sha=created.file.sha
            ),
            metadata=ada.metadata,
        ),
        grpc.StatusCode.ABORTED,
    )
    assert reason(stale) == "SHA_MISMATCH"
    assert error_metadata(stale) == {"sha": git_sha(b"two\n")}
    assert (folder / "notes" / "todo.md").read_text() == "two\n"

    again = await expect_error(
        workspace.stub.CreateFile(
            W.CreateFileRequest(project=project.id, path="notes/todo.md", content="x"),
            metadata=ada.metadata,
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert reason(again) == "FILE_EXISTS"
    no_sha = await expect_error(
        workspace.stub.UpdateFile(
            W.UpdateFileRequest(project=project.id, path="notes/todo.md", content="x"),
            metadata=ada.metadata,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields(no_sha) == ["sha"]


async def test_folders_are_created_moved_and_deleted_only_recursively_when_not_empty(
    workspace: WorkspaceService,
) -> None:
    ada, project, folder = await workspace.user_with_project("demo")
    await workspace.stub.CreateFile(
        W.CreateFileRequest(project=project.id, path="src", directory=True), metadata=ada.metadata
    )
    await workspace.stub.CreateFile(
        W.CreateFileRequest(project=project.id, path="src/a.py", content="print(1)\n"),
        metadata=ada.metadata,
    )
    moved = await workspace.stub.MoveFile(
        W.MoveFileRequest(project=project.id, path="src", new_path="lib/code"),
        metadata=ada.metadata,
    )
    assert (moved.entry.path, moved.entry.type) == ("lib/code", W.ENTRY_TYPE_DIRECTORY)
    assert (folder / "lib" / "code" / "a.py").read_text() == "print(1)\n"
    assert not (folder / "src").exists()

    taken = await expect_error(
        workspace.stub.MoveFile(
            W.MoveFileRequest(project=project.id, path="README.md", new_path="lib/code"),
            metadata=ada.metadata,
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert reason(taken) == "FILE_EXISTS"

    not_empty = await expect_error(
        workspace.stub.DeleteFile(
            W.DeleteFileRequest(project=project.id, path="lib"), metadata=ada.metadata
        ),
        grpc.StatusCode.ABORTED,
    )
    assert reason(not_empty) == "FOLDER_NOT_EMPTY"
    assert (folder / "lib" / "code" / "a.py").exists()
    await workspace.stub.DeleteFile(
        W.DeleteFileRequest(project=project.id, path="lib", recursive=True), metadata=ada.metadata
    )
    assert not (folder / "lib").exists()
    await workspace.stub.DeleteFile(
        W.DeleteFileRequest(project=project.id, path="README.md"), metadata=ada.metadata
    )
    assert not (folder / "README.md").exists()
    gone = await expect_error(
        workspace.stub.DeleteFile(
            W.DeleteFileRequest(project=project.id, path="README.md"), metadata=ada.metadata
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert reason(gone) == "FILE_NOT_FOUND"


# --- path safety ----------------------------------------------------------------------------


async def refused(workspace: WorkspaceService, who: User, project: str, path: str) -> str:
    """Every file RPC refuses `path` with a violation on `path`; the last one's message."""
    calls = [
        workspace.stub.GetFile(W.GetFileRequest(project=project, path=path), metadata=who.metadata),
        workspace.stub.CreateFile(
            W.CreateFileRequest(project=project, path=path, content="x"), metadata=who.metadata
        ),
        workspace.stub.DeleteFile(
            W.DeleteFileRequest(project=project, path=path, recursive=True), metadata=who.metadata
        ),
        workspace.stub.ListFiles(
            W.ListFilesRequest(project=project, path=path), metadata=who.metadata
        ),
    ]
    message = ""
    for call in calls:
        error = await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT)
        assert fields(error) == ["path"]
        message = error.details() or ""
    return message


@pytest.fixture
async def neighbours(workspace: WorkspaceService) -> tuple[User, W.Project, Path, Path]:
    """Ada's project, and Bob's secret next door (another user's root)."""
    ada, project, folder = await workspace.user_with_project("demo")
    bob = await workspace.user()
    await workspace.project(bob, "private")
    secret = workspace.root / bob.id / "private" / "secret.txt"
    secret.write_text("bob's\n")
    return ada, project, folder, secret


async def test_dot_dot_is_refused(
    workspace: WorkspaceService, neighbours: tuple[User, W.Project, Path, Path]
) -> None:
    ada, project, _, secret = neighbours
    bob_id = secret.parents[1].name
    await refused(workspace, ada, project.id, f"../../{bob_id}/private/secret.txt")
    assert secret.read_text() == "bob's\n"


async def test_absolute_paths_are_refused(
    workspace: WorkspaceService, neighbours: tuple[User, W.Project, Path, Path]
) -> None:
    ada, project, _, secret = neighbours
    await refused(workspace, ada, project.id, str(secret))
    assert secret.read_text() == "bob's\n"


async def test_percent_encoded_traversal_is_refused(
    workspace: WorkspaceService, neighbours: tuple[User, W.Project, Path, Path]
) -> None:
    ada, project, _, secret = neighbours
    message = await refused(workspace, ada, project.id, "%2e%2e%2f%2e%2e%2fsecret.txt")
    assert "percent-encoded" in message
    assert secret.read_text() == "bob's\n"


async def test_nul_bytes_are_refused(
    workspace: WorkspaceService, neighbours: tuple[User, W.Project, Path, Path]
) -> None:
    ada, project, folder, _ = neighbours
    message = await refused(workspace, ada, project.id, "README.md\x00.txt")
    assert "control characters" in message
    assert (folder / "README.md").is_file()


async def test_symlinks_leading_outside_are_refused(
    workspace: WorkspaceService, neighbours: tuple[User, W.Project, Path, Path]
) -> None:
    ada, project, folder, secret = neighbours
    (folder / "escape").symlink_to(secret.parent)
    (folder / "leak.txt").symlink_to(secret)
    for path in ("escape/secret.txt", "leak.txt", "escape/new.txt"):
        error = await expect_error(
            workspace.stub.GetFile(
                W.GetFileRequest(project=project.id, path=path), metadata=ada.metadata
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert "outside" in (error.details() or "")
    await expect_error(
        workspace.stub.CreateFile(
            W.CreateFileRequest(project=project.id, path="escape/new.txt", content="x"),
            metadata=ada.metadata,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert sorted(p.name for p in secret.parent.iterdir()) == [
        ".git",
        ".gitignore",
        "README.md",
        "secret.txt",
    ]
    assert secret.read_text() == "bob's\n"


async def test_the_git_folder_is_out_of_reach_of_the_file_routes(
    workspace: WorkspaceService,
) -> None:
    ada, project, folder = await workspace.user_with_project("demo")
    for path in (".git/config", ".git", "a/.GIT/x"):
        error = await expect_error(
            workspace.stub.CreateFile(
                W.CreateFileRequest(project=project.id, path=path, content="[core]\n"),
                metadata=ada.metadata,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert fields(error) == ["path"]
    listed = await workspace.stub.ListFiles(
        W.ListFilesRequest(project=project.id), metadata=ada.metadata
    )
    assert ".git" not in [e.name for e in listed.entries]
    assert "hooksPath" not in (folder / ".git" / "config").read_text()


# --- uploads and downloads ------------------------------------------------------------------


def upload_messages(
    project: str, path: str, data: bytes, chunk: int = 64 * 1024
) -> list[W.UploadFileRequest]:
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
    first = W.UploadFileRequest(
        project=project, path=path, body=httpbody_pb2.HttpBody(data=pieces[0])
    )
    return [first, *(W.UploadFileRequest(body=httpbody_pb2.HttpBody(data=p)) for p in pieces[1:])]


async def test_an_upload_streams_in_chunks_and_downloads_back_identical(
    workspace: WorkspaceService,
) -> None:
    ada, project, folder = await workspace.user_with_project("demo")
    data = os.urandom(3 * MB + 17)
    reply = await workspace.stub.UploadFile(
        iter(upload_messages(project.id, "assets/blob.bin", data)), metadata=ada.metadata
    )
    assert (reply.file.path, reply.file.size, reply.file.sha) == (
        "assets/blob.bin",
        len(data),
        git_sha(data),
    )
    assert (folder / "assets" / "blob.bin").read_bytes() == data

    chunks = [
        c
        async for c in workspace.stub.DownloadFile(
            W.DownloadFileRequest(project=project.id, path="assets/blob.bin"), metadata=ada.metadata
        )
    ]
    assert len(chunks) > 1
    assert b"".join(c.data for c in chunks) == data
    assert chunks[0].content_type == "application/octet-stream"

    readme = [
        c
        async for c in workspace.stub.DownloadFile(
            W.DownloadFileRequest(project=project.id, path="README.md"), metadata=ada.metadata
        )
    ]
    assert readme[0].content_type == "text/markdown; charset=utf-8"


async def test_an_upload_over_the_limit_is_refused_and_leaves_nothing_written(
    start_workspace: object,
) -> None:
    async with start_workspace(WORKSPACE_MAX_UPLOAD_BYTES=str(MB)) as service:  # type: ignore[operator]
        ada, project, folder = await service.user_with_project("demo")
        (folder / "big.bin").write_bytes(b"old")
        for path in ("big.bin", "new/deep/big.bin"):
            error = await expect_error(
                service.stub.UploadFile(
                    iter(upload_messages(project.id, path, b"x" * (MB + 1))),
                    metadata=ada.metadata,
                ),
                grpc.StatusCode.RESOURCE_EXHAUSTED,
            )
            assert reason(error) == "FILE_TOO_LARGE"
        assert (folder / "big.bin").read_bytes() == b"old"
        assert sorted(p.name for p in folder.iterdir()) == [
            ".git",
            ".gitignore",
            "README.md",
            "big.bin",
        ]


async def test_a_cancelled_upload_leaves_nothing_half_written(
    workspace: WorkspaceService,
) -> None:
    ada, project, folder = await workspace.user_with_project("demo")
    sent = asyncio.Event()

    async def stalling() -> AsyncIterator[W.UploadFileRequest]:
        for message in upload_messages(project.id, "half.bin", b"y" * (MB // 2)):
            yield message
        sent.set()
        await asyncio.Event().wait()  # never finishes: the client hangs up instead

    call = workspace.stub.UploadFile(stalling(), metadata=ada.metadata)
    await sent.wait()
    # Wait until the service holds the bytes in its temporary file (made in the volume's
    # staging folder, never in the project), then hang up.
    staging = workspace.root / ".staging"
    for _ in range(500):
        if any(p.name.startswith(".half.bin.") for p in staging.iterdir()):
            break
        await asyncio.sleep(0.01)
    assert any(p.name.startswith(".half.bin.") for p in staging.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == [".git", ".gitignore", "README.md"]
    call.cancel()
    for _ in range(500):
        if not any(p.name.startswith(".half.bin.") for p in staging.iterdir()):
            break
        await asyncio.sleep(0.01)
    assert list(staging.iterdir()) == []
    assert sorted(p.name for p in folder.iterdir()) == [".git", ".gitignore", "README.md"]


# --- watching -------------------------------------------------------------------------------


async def next_events(stream: object, count: int) -> list[tuple[int, str]]:
    found = []
    async for event in stream:  # type: ignore[attr-defined]
        found.append((event.kind, event.path))
        if len(found) == count:
            break
    return found


async def test_watching_reports_changes_made_from_a_shell(workspace: WorkspaceService) -> None:
    ada, project, folder = await workspace.user_with_project("demo")
    stream = workspace.stub.WatchFiles(
        W.WatchFilesRequest(project=project.id), metadata=ada.metadata
    )
    await stream.initial_metadata()  # the first scan is taken: later changes are reported
    await shell(folder, "echo hi > from-shell.txt && rm README.md")
    events = await asyncio.wait_for(next_events(stream, 2), 10)
    assert sorted(events) == [
        (W.CHANGE_KIND_CREATED, "from-shell.txt"),
        (W.CHANGE_KIND_DELETED, "README.md"),
    ]
    await shell(folder, "echo more >> from-shell.txt")
    assert await asyncio.wait_for(next_events(stream, 1), 10) == [
        (W.CHANGE_KIND_MODIFIED, "from-shell.txt")
    ]
    stream.cancel()


async def test_watching_another_users_project_is_not_found(workspace: WorkspaceService) -> None:
    _, project, _ = await workspace.user_with_project("demo")
    bob = await workspace.user()
    stream = workspace.stub.WatchFiles(
        W.WatchFilesRequest(project=project.id), metadata=bob.metadata
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_two_updates_based_on_the_same_sha_cannot_both_win(
    workspace: WorkspaceService,
) -> None:
    ada, project, folder = await workspace.user_with_project("demo")
    base = git_sha((folder / "README.md").read_bytes())
    calls = [
        workspace.stub.UpdateFile(
            W.UpdateFileRequest(project=project.id, path="README.md", content=text, sha=base),
            metadata=ada.metadata,
        )
        for text in ("first\n", "second\n")
    ]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    won = [o for o in outcomes if isinstance(o, W.UpdateFileResponse)]
    lost = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 1
    assert lost[0].code() == grpc.StatusCode.ABORTED
    assert error_metadata(lost[0]) == {"sha": won[0].file.sha}
    assert git_sha((folder / "README.md").read_bytes()) == won[0].file.sha
