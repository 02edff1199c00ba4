"""The workspace routes through the real facade, in front of the real users and workspace
services: projects and files as JSON, the sha conflict as a 409 naming the current sha, bad
input as 404/422, path safety over HTTP, 20 MB uploads streamed through the facade's generic
client-streaming handler (413 beyond, nothing left behind), raw downloads typed by name, git,
and watching as Server-Sent Events. SQLite only: the storage engine plays no part here."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import math
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.runtime.interceptors import DRAIN_SECONDS
from tests.integration.workspace_harness import (
    Client,
    OpenFacade,
    User,
    WorkspaceService,
    bearer,
    shell,
)
from tests.waiting import until

MB = 1024 * 1024


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


def git_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


async def envelope(response: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == status, body
    return body


async def call(
    facade: Client, method: str, path: str, user: User, expect: int = 200, **kwargs: Any
) -> dict[str, Any]:
    """`user`'s request; its envelope, which must come with the status `expect`."""
    headers = {**bearer(user), **kwargs.pop("headers", {})}
    return await envelope(await facade.request(method, path, headers=headers, **kwargs), expect)


async def new_project(facade: Client, who: User, name: str = "site") -> dict[str, Any]:
    response = await facade.post(
        "/api/v1/workspace/projects",
        json={"name": name, "template": "python"},
        headers=bearer(who),
    )
    created: dict[str, Any] = (await envelope(response, 201))["data"]
    return created


async def user_with_a_project(workspace: WorkspaceService, facade: Client) -> tuple[User, str]:
    """A new user, Ada Lovelace, and the id of her project "site"."""
    ada = await workspace.user()
    return ada, (await new_project(facade, ada))["id"]


# --- projects and files as JSON -------------------------------------------------------------


async def test_projects_are_created_listed_renamed_and_deleted_over_rest(
    workspace: WorkspaceService, facade: Client
) -> None:
    ada = await workspace.user()
    project = await new_project(facade, ada)
    assert (project["name"], project["template"]) == ("site", "python")

    listed = await call(facade, "GET", "/api/v1/workspace/projects?limit=1", ada)
    assert [p["id"] for p in listed["data"]] == [project["id"]]
    assert listed["pagination"] == {"page": 1, "limit": 1, "total": 1, "totalPages": 1}

    renamed = await call(
        facade, "PUT", f"/api/v1/workspace/projects/{project['id']}", ada, json={"name": "blog"}
    )
    assert renamed["data"]["name"] == "blog"
    got = await call(facade, "GET", f"/api/v1/workspace/projects/{project['id']}", ada)
    assert got["data"]["name"] == "blog"
    await call(facade, "DELETE", f"/api/v1/workspace/projects/{project['id']}", ada)
    gone = await call(facade, "GET", f"/api/v1/workspace/projects/{project['id']}", ada, 404)
    assert gone["error"] == "PROJECT_NOT_FOUND"


async def test_invalid_names_are_422_and_duplicates_409(
    workspace: WorkspaceService, facade: Client
) -> None:
    ada = await workspace.user()
    await new_project(facade, ada)
    bad = await call(facade, "POST", "/api/v1/workspace/projects", ada, 422, json={"name": "../up"})
    assert {f["field"] for f in bad["details"]["fields"]} == {"name"}
    duplicate = await call(
        facade, "POST", "/api/v1/workspace/projects", ada, 409, json={"name": "site"}
    )
    assert duplicate["error"] == "PROJECT_EXISTS"


async def test_a_file_is_created_read_with_its_sha_and_a_stale_update_is_409_with_the_current(
    workspace: WorkspaceService, facade: Client
) -> None:
    ada, project = await user_with_a_project(workspace, facade)
    created = await call(
        facade,
        "POST",
        "/api/v1/files",
        ada,
        201,
        json={"project": project, "path": "docs/a.md", "content": "one\n"},
    )
    assert (created["data"]["path"], created["data"]["sha"]) == ("docs/a.md", git_sha(b"one\n"))

    read = await call(facade, "GET", f"/api/v1/files/docs/a.md?project={project}", ada)
    assert (read["data"]["content"], read["data"]["sha"]) == ("one\n", git_sha(b"one\n"))

    updated = await call(
        facade,
        "PUT",
        "/api/v1/files/docs/a.md",
        ada,
        json={"project": project, "content": "two\n", "sha": read["data"]["sha"]},
    )
    assert updated["data"]["sha"] == git_sha(b"two\n")
    stale = await call(
        facade,
        "PUT",
        "/api/v1/files/docs/a.md",
        ada,
        409,
        json={"project": project, "content": "three\n", "sha": read["data"]["sha"]},
    )
    assert stale["error"] == "SHA_MISMATCH"
    assert stale["details"] == {"sha": git_sha(b"two\n")}

    listed = await call(facade, "GET", f"/api/v1/files?project={project}&path=docs", ada)
    assert [(e["name"], e["type"], e["size"]) for e in listed["data"]] == [("a.md", "file", "4")]
    assert listed["pagination"]["total"] == 1

    moved = await call(
        facade,
        "POST",
        "/api/v1/files:move",
        ada,
        json={"project": project, "path": "docs/a.md", "newPath": "b.md"},
    )
    assert moved["data"]["path"] == "b.md"
    await call(facade, "DELETE", f"/api/v1/files/b.md?project={project}", ada)
    missing = await call(facade, "GET", f"/api/v1/files/b.md?project={project}", ada, 404)
    assert missing["error"] == "FILE_NOT_FOUND"


@pytest.mark.parametrize(
    ("query_path", "needle"),
    [
        ("../../etc/passwd", "'..'"),
        ("/etc/passwd", "relative"),
        ("%252e%252e%252fsecret", "percent-encoded"),
        ("a%00b", "control characters"),
    ],
)
async def test_unsafe_paths_over_http_are_422(
    workspace: WorkspaceService, facade: Client, query_path: str, needle: str
) -> None:
    ada, project = await user_with_a_project(workspace, facade)
    response = await facade.get(
        f"/api/v1/files:download?project={project}&path={query_path}", headers=bearer(ada)
    )
    body = await envelope(response, 422)
    assert [f["field"] for f in body["details"]["fields"]] == ["path"]
    assert needle in body["details"]["fields"][0]["description"]


async def test_a_symlink_leading_outside_is_422_over_http(
    workspace: WorkspaceService, facade: Client, tmp_path: Path
) -> None:
    ada = await workspace.user()
    project = await new_project(facade, ada)
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours\n")
    (workspace.root / ada.id / "site" / "link.txt").symlink_to(outside)
    body = await call(facade, "GET", f"/api/v1/files/link.txt?project={project['id']}", ada, 422)
    assert "outside" in body["message"]


# --- uploads and downloads ------------------------------------------------------------------


async def chunks_of(data: bytes, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_a_20_mb_upload_streams_through_the_facade_and_downloads_back_identical(
    workspace: WorkspaceService, facade: Client
) -> None:
    ada, project = await user_with_a_project(workspace, facade)
    data = os.urandom(20 * MB)
    uploaded = await envelope(
        await facade.post(
            f"/api/v1/files:upload?project={project}&path=data/big.bin",
            data=chunks_of(data),  # chunked transfer: no Content-Length
            headers={**bearer(ada), "Content-Type": "application/octet-stream"},
        ),
        200,
    )
    assert uploaded["data"]["path"] == "data/big.bin"
    assert (uploaded["data"]["size"], uploaded["data"]["sha"]) == (str(len(data)), git_sha(data))
    assert (workspace.root / ada.id / "site" / "data" / "big.bin").read_bytes() == data

    download = await facade.get(
        f"/api/v1/files:download?project={project}&path=data/big.bin", headers=bearer(ada)
    )
    assert download.status == 200
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert await download.read() == data

    text = await facade.get(
        f"/api/v1/files:download?project={project}&path=main.py", headers=bearer(ada)
    )
    assert text.headers["Content-Type"].startswith("text/x-python")
    assert (await text.read()).startswith(b"def main()")


async def test_an_empty_upload_writes_an_empty_file(
    workspace: WorkspaceService, facade: Client
) -> None:
    ada, project = await user_with_a_project(workspace, facade)
    body = await call(
        facade, "POST", f"/api/v1/files:upload?project={project}&path=empty.txt", ada, data=b""
    )
    assert (body["data"]["size"], body["data"]["sha"]) == ("0", git_sha(b""))
    download = await facade.get(
        f"/api/v1/files:download?project={project}&path=empty.txt", headers=bearer(ada)
    )
    assert (download.status, await download.read()) == (200, b"")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_an_upload_over_20_mb_is_413_and_leaves_nothing_behind(
    workspace: WorkspaceService, facade: Client
) -> None:
    ada, project = await user_with_a_project(workspace, facade)
    folder = workspace.root / ada.id / "site"
    before = leftovers(folder)
    declared = await envelope(
        await facade.post(
            f"/api/v1/files:upload?project={project}&path=big.bin",
            data=io.BytesIO(b"x" * (20 * MB + 1)),  # its Content-Length: refused before any call
            headers=bearer(ada),
        ),
        413,
    )
    assert declared["error"] == "PAYLOAD_TOO_LARGE"
    streamed = await envelope(
        await facade.post(
            f"/api/v1/files:upload?project={project}&path=big.bin",
            data=chunks_of(b"x" * (20 * MB + 1)),  # no length: cut off once it goes over
            headers=bearer(ada),
        ),
        413,
    )
    assert "20 MB" in streamed["message"]
    # the service drops its temporary file once the call is cancelled
    await until(lambda: leftovers(folder) == before, "the temporary file to go", within=5)


async def test_an_upload_to_an_unknown_project_is_404_and_a_bad_path_422(
    workspace: WorkspaceService, facade: Client
) -> None:
    ada = await workspace.user()
    unknown = await call(
        facade, "POST", "/api/v1/files:upload?project=ghost&path=a.bin", ada, 404, data=b"abc"
    )
    assert unknown["error"] == "PROJECT_NOT_FOUND"
    project = (await new_project(facade, ada))["id"]
    bad = await call(
        facade,
        "POST",
        f"/api/v1/files:upload?project={project}&path=../a.bin",
        ada,
        422,
        data=b"abc",
    )
    assert [f["field"] for f in bad["details"]["fields"]] == ["path"]
    # The document marks path required (not empty): a request without one is refused, naming it.
    for query in (f"project={project}&path=", f"project={project}"):
        unnamed = await call(facade, "POST", f"/api/v1/files:upload?{query}", ada, 422, data=b"x")
        assert unnamed["details"]["fields"] == [{"field": "path", "description": "is required"}]
    unauthenticated = await envelope(
        await facade.post(f"/api/v1/files:upload?project={project}&path=a.bin", data=b"abc"), 401
    )
    assert unauthenticated["service"] == "workspace"


# --- git and watching -----------------------------------------------------------------------


async def test_git_status_commit_and_log_over_rest(
    workspace: WorkspaceService, facade: Client
) -> None:
    ada, project = await user_with_a_project(workspace, facade)
    (workspace.root / ada.id / "site" / "main.py").write_text("print('changed')\n")
    status = await call(facade, "GET", f"/api/v1/git/status?project={project}", ada)
    assert (status["data"]["branch"], status["data"]["unstaged"]) == ("main", ["main.py"])
    committed = await call(
        facade,
        "POST",
        "/api/v1/git/commit",
        ada,
        json={"project": project, "message": "Change main"},
    )
    assert committed["data"]["authorName"] == "Ada Lovelace"
    log = await call(facade, "GET", f"/api/v1/git/log?project={project}&limit=1", ada)
    assert [(c["sha"], c["subject"]) for c in log["data"]] == [
        (committed["data"]["commit"], "Change main")
    ]
    conflict = await call(
        facade, "POST", "/api/v1/git/pull", ada, 422, json={"project": project, "remote": "-x"}
    )
    assert [f["field"] for f in conflict["details"]["fields"]] == ["remote"]


async def test_changes_made_from_a_shell_arrive_as_server_sent_events(
    workspace: WorkspaceService, open_workspace_facade: OpenFacade
) -> None:
    # A short heartbeat: the facade notices at once that the client went away.
    async with open_workspace_facade(STREAM_HEARTBEAT="0.05") as facade:
        await watch_over_sse(workspace, facade)


async def watch_over_sse(workspace: WorkspaceService, facade: Client) -> None:
    ada, project = await user_with_a_project(workspace, facade)
    folder = workspace.root / ada.id / "site"
    response = await facade.get(
        f"/api/v1/files:watch?project={project}",
        headers={**bearer(ada), "Accept": "text/event-stream"},
    )
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    await shell(folder, "mkdir -p src && echo x > src/new.py")

    async def two_events() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        async for line in response.content:
            if line.startswith(b"data: "):
                found.append(json.loads(line[len(b"data: ") :]))
                if len(found) == 2:
                    return found
        return found

    events = await asyncio.wait_for(two_events(), 10)
    response.close()
    assert sorted((e["kind"], e["path"], e["type"]) for e in events) == [
        ("created", "src", "directory"),
        ("created", "src/new.py", "file"),
    ]


async def test_a_client_that_hangs_up_midway_leaves_nothing_behind(
    workspace: WorkspaceService, facade: Client
) -> None:
    ada, project = await user_with_a_project(workspace, facade)
    folder = workspace.root / ada.id / "site"
    staging = workspace.root / ".staging"  # where writes are made (services/workspace/staging.py)
    before = leftovers(folder)
    _, writer = await asyncio.open_connection(facade.host, facade.port)
    head = (
        f"POST /api/v1/files:upload?project={project}&path=part.bin HTTP/1.1\r\n"
        f"Host: {facade.host}\r\nAuthorization: Bearer {ada.token}\r\n"
        f"Content-Length: {10 * MB}\r\n\r\n"
    )
    writer.write(head.encode() + b"p" * (2 * MB))
    await writer.drain()
    # The service has the first chunks in its temporary file; then the client goes away.
    await until(
        lambda: any(name.startswith(".part.bin.") for name in leftovers(staging)),
        "the temporary file",
        within=5,
    )
    assert leftovers(folder) == before, "never in the project"
    writer.close()
    await until(lambda: leftovers(staging) == [], "the temporary file to go", within=5)
    assert leftovers(folder) == before


async def test_a_newline_in_a_path_reaches_the_rules_and_never_aiohttps_plain_404(
    workspace: WorkspaceService, facade: Client
) -> None:
    """Found by the fuzzer: `.` in the route patterns stopped at a decoded newline, so such a
    path matched no route, not even the catch-all, and aiohttp answered in plain text."""
    ada = await workspace.user()
    await new_project(facade, ada)
    deleted = await call(facade, "DELETE", "/api/v1/files/a%0Ab", ada, 422)
    assert deleted["details"]["fields"] == [
        {"field": "path", "description": "must not contain control characters or backslashes"}
    ]
    unknown = await call(facade, "GET", "/api/v1/no%0Asuch", ada, 404)
    assert (unknown["error"], unknown["message"]) == ("NOT_FOUND", "no such route")


@pytest.mark.parametrize("attempt", range(8))
async def test_a_large_upload_refused_at_once_gets_the_services_answer(
    workspace: WorkspaceService, facade: Client, attempt: int
) -> None:
    # The service refuses the upload at its start (a token it does not take) or at its first
    # message (no such project) while the facade is still writing the rest: the caller hears
    # the service's answer, not gRPC's "Internal error from Core" (grpc/grpc#36066) as a 500.
    ada = await workspace.user()
    body = os.urandom(4 * 1024 * 1024)
    path = "/api/v1/files:upload?project=ghost&path=a.bin"
    unknown = await call(facade, "POST", path, ada, 404, data=io.BytesIO(body))
    assert unknown["error"] == "PROJECT_NOT_FOUND"
    stranger = {"Authorization": "Bearer not-a-token"}
    refused = await call(facade, "POST", path, ada, 401, data=io.BytesIO(body), headers=stranger)
    assert refused["error"] == "TOKEN_INVALID"


async def test_a_refused_upload_still_arriving_after_the_drain_bound_gets_the_services_answer(
    workspace: WorkspaceService, facade: Client
) -> None:
    # Refused at its first message (no such project) while the rest arrives slowly, for longer
    # than DRAIN_SECONDS: the service read on for DRAIN_SECONDS in all, then refused as the
    # facade still wrote, and grpc's asyncio client turned that now and then into "Internal
    # error from Core" (grpc/grpc#36066): a 500 (1 in 36 such uploads, 12 at once). Now it reads
    # while the body keeps coming, and answers once the body has ended: never mid-write.
    ada = await workspace.user()
    path = "/api/v1/files:upload?project=ghost&path=a.bin"
    lasting = DRAIN_SECONDS + 2

    async def refused() -> tuple[int, str, float, float]:
        ended: list[float] = []

        async def body() -> AsyncIterator[bytes]:
            loop = asyncio.get_running_loop()
            until_ = loop.time() + lasting
            while loop.time() < until_:
                yield b"\0" * (16 * 1024)
                await asyncio.sleep(0.007)  # about 2.5 MB a second: under the upload limit
            ended.append(loop.time())

        response = await facade.post(path, data=body(), headers=bearer(ada))
        answered = asyncio.get_running_loop().time()
        envelope_: dict[str, Any] = await response.json()
        return response.status, envelope_["error"], answered, ended[0] if ended else math.inf

    answers = await asyncio.gather(*(refused() for _ in range(4)))
    assert [(status, error) for status, error, _, _ in answers] == [(404, "PROJECT_NOT_FOUND")] * 4
    # Answered after the whole body was sent, not at DRAIN_SECONDS.
    assert all(answered >= ended for _, _, answered, ended in answers), answers
