"""Per-user workspace quotas through the real workspace service and facade: past the byte quota
a write or an upload is 413 QUOTA_EXCEEDED and writes nothing, past the file count it is 422,
the usage and limits are in the details, a new project counts in full, a pull past the quota
is undone, and files the terminal wrote are seen by the next scan. SQLite only."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from stockfolio.workspace.v1 import workspace_pb2

from services.workspace.quota import measure
from tests.integration.workspace_harness import (
    Client,
    OpenFacade,
    StartWorkspace,
    User,
    WorkspaceService,
    bearer,
)
from tests.rpc_errors import expect_error, reason

W = workspace_pb2
QUOTA = {"WORKSPACE_QUOTA_BYTES": str(1024 * 1024), "WORKSPACE_QUOTA_FILES": "80"}


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
async def workspace(start_workspace: StartWorkspace) -> AsyncIterator[WorkspaceService]:
    async with start_workspace(**QUOTA, WORKSPACE_QUOTA_SCAN_INTERVAL="0.2") as service:
        yield service


@pytest.fixture
async def facade(open_workspace_facade: OpenFacade) -> AsyncIterator[Client]:
    async with open_workspace_facade() as client:
        yield client


async def envelope(response: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == status, body
    return body


async def setup(workspace: WorkspaceService) -> tuple[User, W.Project, Path]:
    ada = await workspace.user()
    project = await workspace.project(ada, "site")
    return ada, project, workspace.root / ada.id


async def test_a_write_past_the_byte_quota_is_413_with_the_usage_and_writes_nothing(
    workspace: WorkspaceService, facade: Client
) -> None:
    ada, project, folder = await setup(workspace)
    used = measure(folder)
    response = await facade.post(
        "/api/v1/files",
        json={"project": project.id, "path": "big.txt", "content": "x" * (1024 * 1024 - 2000)},
        headers=bearer(ada),
    )
    body = await envelope(response, 413)
    assert body["error"] == "QUOTA_EXCEEDED"
    assert body["details"] == {
        "quota": "bytes",
        "usedBytes": str(used.bytes),
        "usedFiles": str(used.files),
        "limitBytes": str(1024 * 1024),
        "limitFiles": "80",
    }
    assert not (folder / "site" / "big.txt").exists()
    assert measure(folder) == used

    small = await facade.post(
        "/api/v1/files",
        json={"project": project.id, "path": "small.txt", "content": "fits\n"},
        headers=bearer(ada),
    )
    await envelope(small, 201)


async def test_an_upload_past_the_byte_quota_is_refused_midway_and_leaves_nothing(
    workspace: WorkspaceService, facade: Client
) -> None:
    ada, project, folder = await setup(workspace)
    response = await facade.post(
        f"/api/v1/files:upload?project={project.id}&path=data/blob.bin",
        data=io.BytesIO(b"\0" * (2 * 1024 * 1024)),
        headers=bearer(ada),
    )
    body = await envelope(response, 413)
    assert (body["error"], body["details"]["quota"]) == (
        "QUOTA_EXCEEDED",
        "bytes",
    )
    assert not (folder / "site" / "data").exists()


async def test_a_file_past_the_file_count_quota_is_422_with_the_usage(
    workspace: WorkspaceService, facade: Client
) -> None:
    ada, project, folder = await setup(workspace)
    room = 80 - measure(folder).files
    for index in range(room):
        created = await facade.post(
            "/api/v1/files",
            json={"project": project.id, "path": f"n/{index}.txt", "content": "."},
            headers=bearer(ada),
        )
        await envelope(created, 201)
    response = await facade.post(
        "/api/v1/files",
        json={"project": project.id, "path": "one-more.txt", "content": "."},
        headers=bearer(ada),
    )
    body = await envelope(response, 422)
    assert body["error"] == "QUOTA_EXCEEDED"
    assert (body["details"]["quota"], body["details"]["usedFiles"]) == (
        "files",
        "80",
    )
    assert not (folder / "site" / "one-more.txt").exists()


async def test_files_the_terminal_wrote_count_once_scanned_and_a_new_project_counts_in_full(
    workspace: WorkspaceService,
) -> None:
    ada, project, folder = await setup(workspace)
    await workspace.stub.GetFile(
        W.GetFileRequest(project=project.id, path="README.md"), metadata=ada.metadata
    )
    room = 1024 * 1024 - measure(folder).bytes
    (folder / "site" / "terminal.bin").write_bytes(b"\0" * (room - 1000))
    # The service learns of files the terminal wrote by its scan (every 0.2 s here).
    await asyncio.sleep(0.5)
    error = await expect_error(
        workspace.stub.CreateProject(W.CreateProjectRequest(name="second"), metadata=ada.metadata),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert reason(error) == "QUOTA_EXCEEDED"
    assert not (folder / "second").exists()


async def test_a_pull_past_the_quota_is_undone(workspace: WorkspaceService, tmp_path: Path) -> None:
    ada, project, folder = await setup(workspace)
    bare = await workspace.published(ada, project)
    elsewhere = tmp_path / "elsewhere"
    run = partial(subprocess.run, check=True, capture_output=True, text=True)
    run(["git", "clone", "--quiet", str(bare), str(elsewhere)])
    (elsewhere / "big.bin").write_bytes(os.urandom(1024 * 1024))
    identity = ["-c", "user.name=Bob", "-c", "user.email=bob@example.com"]
    for args in (["add", "big.bin"], ["commit", "--quiet", "-m", "big"], ["push", "--quiet"]):
        run(["git", *identity, *args], cwd=elsewhere)
    before = run(["git", "rev-parse", "HEAD"], cwd=folder / "site").stdout.strip()

    error = await expect_error(
        workspace.stub.GitPull(W.GitPullRequest(project=project.id), metadata=ada.metadata),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert reason(error) == "QUOTA_EXCEEDED"
    after = run(["git", "rev-parse", "HEAD"], cwd=folder / "site").stdout.strip()
    assert after == before
    assert not (folder / "site" / "big.bin").exists()
    assert measure(folder).bytes < 1024 * 1024
