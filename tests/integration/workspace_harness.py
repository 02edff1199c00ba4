"""Fixtures for the workspace service's tests: a migrated workspace database beside the users
one, a real users service (tokens, profiles), a real workspace server on port 0 with its root,
a folder of bare repositories allowed as file:// remotes, and the real facade in front; uploads
as tests make them, one held open once written; a terminal's loop swapping two names.

Test modules import the fixtures and helpers they use from here."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from stockfolio.users.v1 import users_pb2, users_pb2_grpc
from stockfolio.workspace.v1 import workspace_pb2, workspace_pb2_grpc

from services.runtime.auth import bearer as authorization
from services.runtime.config import RuntimeConfig
from services.runtime.server import running
from services.workspace.locks import VolumeLocks
from services.workspace.remotes import SHARED
from services.workspace.server import build as build_workspace
from services.workspace.staging import STAGING
from tests.conftest import service_database
from tests.integration.conftest import FacadeInFront
from tests.waiting import until

PASSWORD = "correct-horse-9"
Metadata = tuple[tuple[str, str], ...]
Client = TestClient[web.Request, web.Application]
# The body of an upload goes in messages of this size.
CHUNK = 64 * 1024
# What a terminal runs to swap two names back and forth for as long as it lives.
SWAPPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
os.chdir(sys.argv[1])
while True:
    libc.renameat2(AT_FDCWD, b"a", AT_FDCWD, b"b", RENAME_EXCHANGE)
"""


@pytest.fixture
def workspace_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A migrated workspace database on the same engine as `database_url` (users keeps that
    one: each service owns its own database and migration history)."""
    with service_database("workspace", database_url, tmp_path) as url:
        yield url


@dataclass
class User:
    metadata: Metadata
    id: str
    email: str
    token: str


@dataclass
class WorkspaceService:
    """A running workspace service and what a test needs to talk to it."""

    stub: workspace_pb2_grpc.WorkspaceServiceStub
    users: users_pb2_grpc.UsersServiceStub
    address: str
    users_address: str
    root: Path
    remotes: Path
    config: RuntimeConfig

    async def user(self, name: str = "Ada Lovelace") -> User:
        email = f"u{uuid.uuid4().hex[:10]}@example.com"
        reply = await self.users.Register(
            users_pb2.RegisterRequest(email=email, password=PASSWORD, name=name)
        )
        token = reply.tokens.access_token
        return User((authorization(token),), reply.user.id, email, token)

    async def project(
        self, who: User, name: str = "demo", template: str = "empty"
    ) -> workspace_pb2.Project:
        reply = await self.stub.CreateProject(
            workspace_pb2.CreateProjectRequest(name=name, template=template),
            metadata=who.metadata,
        )
        project: workspace_pb2.Project = reply.project
        return project

    async def user_with_project(self, name: str) -> tuple[User, workspace_pb2.Project, Path]:
        """A new user, Ada Lovelace, with an empty project `name`, and the project's folder."""
        ada = await self.user()
        project = await self.project(ada, name)
        return ada, project, self.root / ada.id / name

    async def published(self, who: User, project: workspace_pb2.Project) -> Path:
        """A new bare repository of `who`'s, added to `project` as origin and pushed to."""
        remote = self.bare_remote(who)
        await self.stub.AddRemote(
            workspace_pb2.AddRemoteRequest(project=project.id, name="origin", url=remote.as_uri()),
            metadata=who.metadata,
        )
        await self.stub.GitPush(
            workspace_pb2.GitPushRequest(project=project.id), metadata=who.metadata
        )
        return remote

    async def user_with_published_project(
        self, name: str
    ) -> tuple[User, workspace_pb2.Project, Path, Path]:
        """A new user with a project `name` pushed to a new bare repository: the user, the
        project, its folder and the bare repository."""
        ada, project, folder = await self.user_with_project(name)
        return ada, project, folder, await self.published(ada, project)

    def bare_remote(self, owner: User | None, name: str = "origin.git") -> Path:
        """A new bare repository in `owner`'s folder of the file:// remotes, the one folder
        there they may use (None: in the shared folder, which every user may pull from)."""
        path = self.remotes / (owner.id if owner is not None else SHARED) / name
        path.parent.mkdir(exist_ok=True)
        subprocess.run(
            ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(path)], check=True
        )
        return path


StartWorkspace = Callable[..., contextlib.AbstractAsyncContextManager[WorkspaceService]]


@pytest.fixture
def start_workspace(
    make_config: Callable[..., RuntimeConfig],
    users_service: RuntimeConfig,
    workspace_database_url: str,
    tmp_path: Path,
) -> StartWorkspace:
    """`start_workspace(**env)` runs a workspace server; keyword arguments are environment
    variables."""

    @contextlib.asynccontextmanager
    async def start(**environ: str) -> AsyncIterator[WorkspaceService]:
        root = tmp_path / "workspaces"
        remotes = tmp_path / "remotes"
        remotes.mkdir(exist_ok=True)
        users_address = users_service.addresses["users"][0]
        settings = {
            "WORKSPACE_DATABASE_URL": workspace_database_url,
            "USERS_ADDRS": users_address,
            "WORKSPACE_ROOT": str(root),
            "WORKSPACE_GIT_FILE_ROOTS": str(remotes),
            "WORKSPACE_WATCH_INTERVAL": "0.05",
            "WORKSPACE_GIT_TIMEOUT": "30",
            **environ,
        }
        config = make_config("workspace", **settings)
        async with (
            running(config, build_workspace, port=0, grace=0) as service,
            grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
            grpc.aio.insecure_channel(users_address) as users_channel,
        ):
            yield WorkspaceService(
                workspace_pb2_grpc.WorkspaceServiceStub(channel),
                users_pb2_grpc.UsersServiceStub(users_channel),
                f"127.0.0.1:{service.port}",
                users_address,
                Path(settings["WORKSPACE_ROOT"]),
                remotes,
                config,
            )

    return start


@pytest.fixture
async def workspace(start_workspace: StartWorkspace) -> AsyncIterator[WorkspaceService]:
    async with start_workspace() as service:
        yield service


OpenFacade = Callable[..., contextlib.AbstractAsyncContextManager[Client]]


@pytest.fixture
def open_workspace_facade(
    facade_in_front: FacadeInFront, workspace: WorkspaceService
) -> OpenFacade:
    """The real facade in front of the real users and workspace services."""
    addresses = {"users": workspace.users_address, "workspace": workspace.address}
    return functools.partial(facade_in_front, addresses)


@pytest.fixture
async def facade(open_workspace_facade: OpenFacade) -> AsyncIterator[Client]:
    async with open_workspace_facade() as client:
        yield client


async def shell(cwd: Path, command: str) -> None:
    """Run `command` with sh in `cwd`, as a user's terminal would."""
    process = await asyncio.create_subprocess_exec("sh", "-c", command, cwd=cwd)
    assert await process.wait() == 0, command


def git(cwd: Path, *args: str, stdin: str | None = None) -> str:
    """Plain git in `cwd`, as another user's terminal would run it (Eve commits); its output."""
    done = subprocess.run(
        ["git", "-c", "user.name=Eve", "-c", "user.email=eve@example.com", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def bearer(who: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {who.token}"}


async def upload(
    ws: WorkspaceService,
    who: User,
    project: str,
    path: str,
    size: int,
    *,
    sent: asyncio.Event | None = None,
    hold: asyncio.Event | None = None,
) -> workspace_pb2.UploadFileResponse:
    """Upload `size` zero bytes; with `hold`, once every byte is sent (`sent` set) the stream
    stays open, the call unfinished and its room held, until `hold` is set."""

    async def messages() -> AsyncIterator[workspace_pb2.UploadFileRequest]:
        yield workspace_pb2.UploadFileRequest(project=project, path=path)
        left = size
        while left > 0:
            message = workspace_pb2.UploadFileRequest()
            message.body.data = b"\0" * min(CHUNK, left)
            left -= len(message.body.data)
            yield message
        if sent is not None:
            sent.set()
        if hold is not None:
            await hold.wait()

    reply: workspace_pb2.UploadFileResponse = await ws.stub.UploadFile(
        messages(), metadata=who.metadata
    )
    return reply


def staged_bytes(ws: WorkspaceService) -> int:
    """Bytes of the writes under way on the volume (in its staging folder)."""
    return sum(entry.stat().st_size for entry in (ws.root / STAGING).iterdir() if entry.is_file())


async def held_upload(
    ws: WorkspaceService, who: User, project: str, path: str, size: int
) -> tuple[asyncio.Task[workspace_pb2.UploadFileResponse], asyncio.Event]:
    """An upload of `size` bytes whose every byte the service has written (and so has taken
    room for), its stream held open until the event returned is set."""
    sent, hold = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(upload(ws, who, project, path, size, sent=sent, hold=hold))
    await asyncio.wait_for(sent.wait(), 10)
    await until(lambda: staged_bytes(ws) >= size, "every byte of the held upload written")
    return task, hold


@contextlib.asynccontextmanager
async def swapping(folder: Path) -> AsyncIterator[None]:
    """`a` and `b` in `folder` swapped back and forth, as fast as a terminal can, meanwhile."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", SWAPPER, str(folder))
    try:
        yield
    finally:
        process.kill()
        await process.wait()


def put_decoy(project: Path) -> None:
    """A decoy diary in whichever of `a` and `b` is the real folder now, written through the
    folder's own descriptor: the swapper must not turn the test itself into the attacker."""
    for name in ("a", "b"):
        try:
            folder = os.open(project / name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue  # the link, at this moment
        try:
            file = os.open("diary.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, dir_fd=folder)
            os.write(file, b"decoy\n")
            os.close(file)
        except FileExistsError:
            pass
        finally:
            os.close(folder)


def moved_as_a_lock_is_asked(
    monkeypatch: pytest.MonkeyPatch,
    matches: Callable[[str], bool],
    moves: Callable[[], Awaitable[None]],
) -> None:
    """The first holder of the volume's locks asking for a key that `matches` (alone), its
    project looked up and none of its locks taken yet, waits for `moves` first: renames or
    deletes of projects through the other replica landing while it waits for its locks."""
    real_hold = VolumeLocks.hold
    pending = [moves]

    @contextlib.asynccontextmanager
    async def hold(
        self: VolumeLocks, *keys: str, shared: Iterable[str] = ()
    ) -> AsyncIterator[None]:
        if pending and any(matches(key) for key in keys):
            await pending.pop()()
        async with real_hold(self, *keys, shared=shared):
            yield

    monkeypatch.setattr(VolumeLocks, "hold", hold)


async def rename(replica: WorkspaceService, who: User, project: str, name: str) -> None:
    await replica.stub.RenameProject(
        workspace_pb2.RenameProjectRequest(id=project, name=name), metadata=who.metadata
    )
