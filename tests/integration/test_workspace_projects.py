"""Projects through the real workspace service on SQLite and PostgreSQL: templates, each a git
repository with a first commit by its owner; the index (list, get, rename, delete); another
user's projects as absent as unknown ones; ResolveProject for the terminal service."""

from __future__ import annotations

import grpc
import pytest
from stockfolio.workspace.v1 import workspace_pb2

from tests.integration.workspace_harness import WorkspaceService, git
from tests.rpc_errors import expect_error, fields, reason

W = workspace_pb2


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("empty", {".gitignore", "README.md"}),
        ("python", {".gitignore", "README.md", "main.py", "requirements.txt"}),
        ("node", {".gitignore", "README.md", "index.js", "package.json"}),
        ("notes", {".gitignore", "README.md", "notes"}),
    ],
)
async def test_a_project_starts_from_its_template_as_a_repository_with_a_first_commit(
    workspace: WorkspaceService, template: str, expected: set[str]
) -> None:
    ada = await workspace.user("Ada Lovelace")
    project = await workspace.project(ada, f"my-{template}", template)

    assert (project.name, project.template) == (f"my-{template}", template)
    folder = workspace.root / ada.id / project.name
    assert {p.name for p in folder.iterdir()} - {".git"} == expected
    assert (folder / "README.md").read_text().startswith(f"# my-{template}\n")
    assert git(folder, "log", "--format=%an <%ae>|%s").splitlines() == [
        f"Ada Lovelace <{ada.email}>|Start from the {template} template"
    ]
    assert git(folder, "status", "--porcelain") == ""


async def test_the_python_gitignore_ignores_what_python_leaves_behind(
    workspace: WorkspaceService,
) -> None:
    ada = await workspace.user()
    await workspace.project(ada, "py", "python")
    ignore = (workspace.root / ada.id / "py" / ".gitignore").read_text().splitlines()
    assert {"__pycache__/", ".venv/", "*.py[cod]"} <= set(ignore)


async def test_projects_are_listed_paginated_got_renamed_and_deleted(
    workspace: WorkspaceService,
) -> None:
    ada = await workspace.user()
    made = [await workspace.project(ada, f"p{n}") for n in range(3)]

    page = await workspace.stub.ListProjects(W.ListProjectsRequest(limit=2), metadata=ada.metadata)
    assert [p.name for p in page.projects] == ["p0", "p1"]
    assert (page.pagination.total, page.pagination.total_pages) == (3, 2)

    got = await workspace.stub.GetProject(W.GetProjectRequest(id=made[1].id), metadata=ada.metadata)
    assert (got.project.id, got.project.name) == (made[1].id, "p1")

    renamed = await workspace.stub.RenameProject(
        W.RenameProjectRequest(id=made[1].id, name="renamed"), metadata=ada.metadata
    )
    assert (renamed.project.id, renamed.project.name) == (made[1].id, "renamed")
    home = workspace.root / ada.id
    assert {p.name for p in home.iterdir()} == {"p0", "renamed", "p2"}
    assert (home / "renamed" / ".git").is_dir()

    await workspace.stub.DeleteProject(W.DeleteProjectRequest(id=made[0].id), metadata=ada.metadata)
    left = await workspace.stub.ListProjects(W.ListProjectsRequest(), metadata=ada.metadata)
    assert [p.name for p in left.projects] == ["renamed", "p2"]
    assert {p.name for p in home.iterdir()} == {"renamed", "p2"}
    error = await expect_error(
        workspace.stub.GetProject(W.GetProjectRequest(id=made[0].id), metadata=ada.metadata),
        grpc.StatusCode.NOT_FOUND,
    )
    assert reason(error) == "PROJECT_NOT_FOUND"


async def test_a_duplicate_name_is_a_conflict_and_leaves_the_first_untouched(
    workspace: WorkspaceService,
) -> None:
    ada = await workspace.user()
    first = await workspace.project(ada, "same")
    error = await expect_error(workspace.project(ada, "same"), grpc.StatusCode.ALREADY_EXISTS)
    assert reason(error) == "PROJECT_EXISTS"
    other = await workspace.project(ada, "other")
    error = await expect_error(
        workspace.stub.RenameProject(
            W.RenameProjectRequest(id=other.id, name="same"), metadata=ada.metadata
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    listed = await workspace.stub.ListProjects(W.ListProjectsRequest(), metadata=ada.metadata)
    assert [(p.id, p.name) for p in listed.projects] == [(first.id, "same"), (other.id, "other")]
    # Nothing half-made is left behind in the staging area either.
    assert list((workspace.root / ".staging").iterdir()) == []


@pytest.mark.parametrize("name", ["", "..", ".hidden", "-rf", "a/b", "a b", "x" * 101, "a..b"])
async def test_invalid_project_names_are_refused(workspace: WorkspaceService, name: str) -> None:
    ada = await workspace.user()
    error = await expect_error(workspace.project(ada, name), grpc.StatusCode.INVALID_ARGUMENT)
    assert set(fields(error)) == {"name"}
    assert not (workspace.root / ada.id).exists() or list((workspace.root / ada.id).iterdir()) == []


async def test_an_unknown_template_is_refused(workspace: WorkspaceService) -> None:
    ada = await workspace.user()
    error = await expect_error(
        workspace.project(ada, "x", "cobol"), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert fields(error) == ["template"]


async def test_another_users_project_is_as_absent_as_an_unknown_one(
    workspace: WorkspaceService,
) -> None:
    ada, bob = await workspace.user(), await workspace.user()
    project = await workspace.project(ada, "secret")
    for call in (
        workspace.stub.GetProject(W.GetProjectRequest(id=project.id), metadata=bob.metadata),
        workspace.stub.GetProject(W.GetProjectRequest(id="secret"), metadata=bob.metadata),
        workspace.stub.DeleteProject(W.DeleteProjectRequest(id=project.id), metadata=bob.metadata),
        workspace.stub.RenameProject(
            W.RenameProjectRequest(id=project.id, name="mine"), metadata=bob.metadata
        ),
        workspace.stub.ListFiles(W.ListFilesRequest(project=project.id), metadata=bob.metadata),
        workspace.stub.ResolveProject(
            W.ResolveProjectRequest(project_id=project.id), metadata=bob.metadata
        ),
    ):
        await expect_error(call, grpc.StatusCode.NOT_FOUND)
    listed = await workspace.stub.ListProjects(W.ListProjectsRequest(), metadata=bob.metadata)
    assert list(listed.projects) == []
    assert (workspace.root / ada.id / "secret" / "README.md").is_file()


async def test_resolve_project_names_the_project_folder_or_the_users_root(
    workspace: WorkspaceService,
) -> None:
    ada = await workspace.user()
    root = await workspace.stub.ResolveProject(W.ResolveProjectRequest(), metadata=ada.metadata)
    assert (root.project_id, root.name) == ("", "")
    # Relative to the workspace root: a caller (a user calling over gRPC directly) never
    # learns where the files lie on the host.
    assert root.directory == ada.id
    assert str(workspace.root) not in root.directory
    assert (workspace.root / ada.id).is_dir()

    project = await workspace.project(ada, "site")
    found = await workspace.stub.ResolveProject(
        W.ResolveProjectRequest(project_id=project.id), metadata=ada.metadata
    )
    assert (found.project_id, found.name) == (project.id, "site")
    assert found.directory == f"{ada.id}/site"

    unknown = await expect_error(
        workspace.stub.ResolveProject(
            W.ResolveProjectRequest(project_id="no-such-project"), metadata=ada.metadata
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert reason(unknown) == "PROJECT_NOT_FOUND"


async def test_resolve_project_needs_a_user_token(workspace: WorkspaceService) -> None:
    error = await expect_error(
        workspace.stub.ResolveProject(W.ResolveProjectRequest()), grpc.StatusCode.UNAUTHENTICATED
    )
    assert reason(error) == "TOKEN_MISSING"


async def test_a_retried_create_with_the_same_idempotency_key_creates_one_project(
    workspace: WorkspaceService,
) -> None:
    ada = await workspace.user()
    metadata = (*ada.metadata, ("idempotency-key", "create-once"))
    request = W.CreateProjectRequest(name="once", template="notes")
    first = await workspace.stub.CreateProject(request, metadata=metadata)
    again = await workspace.stub.CreateProject(request, metadata=metadata)
    assert first.project.id == again.project.id
    listed = await workspace.stub.ListProjects(W.ListProjectsRequest(), metadata=ada.metadata)
    assert [p.id for p in listed.projects] == [first.project.id]
