"""gRPC servicer of WorkspaceService: request -> use case -> response. Thin by design.

Every call acts for the caller named by the token (`require_identity`): it reaches that user's
projects only; a call naming no project acts on their home project (see projects.py). Creating
RPCs run through the idempotency store (an `Idempotency-Key` retried gets the first response).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from google.api import httpbody_pb2
from stockfolio.workspace.v1 import workspace_pb2, workspace_pb2_grpc

from services.runtime.errors import InvalidArgument
from services.runtime.idempotency import IdempotencyStore
from services.runtime.interceptors import require_identity
from services.runtime.pagination import page_of
from services.workspace.authors import ProfileAuthors
from services.workspace.files import Files
from services.workspace.git import GitRunner
from services.workspace.messages import (
    branch_message,
    commit_message,
    content_message,
    entry_message,
    event_message,
    project_message,
    remote_message,
    status_message,
    written_message,
)
from services.workspace.project_writes import ProjectWrites
from services.workspace.projects import Located, Projects
from services.workspace.quota import Quotas
from services.workspace.versioning import Versioning
from services.workspace.watch import Watchers

DEFAULT_LOG_LIMIT = 50


@dataclass(frozen=True)
class UseCases:
    projects: Projects
    files: Files
    writes: ProjectWrites
    git: GitRunner
    authors: ProfileAuthors
    watchers: Watchers
    idempotency: IdempotencyStore
    quotas: Quotas
    versioning: Versioning


class WorkspaceServicer(workspace_pb2_grpc.WorkspaceServiceServicer):
    def __init__(self, cases: UseCases) -> None:
        self._cases = cases

    async def _project(self, key: str) -> Located:
        """The caller's project named by `key`, or with none their home project."""
        identity = require_identity()
        return await self._cases.projects.locate_or_home(
            identity.user_id, key, lambda: self._cases.authors.author(identity)
        )

    # --- projects ------------------------------------------------------------------------------

    async def ListProjects(
        self, request: workspace_pb2.ListProjectsRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.ListProjectsResponse:
        page = page_of(request.page, request.limit)
        found, total = await self._cases.projects.page(require_identity().user_id, page)
        return workspace_pb2.ListProjectsResponse(
            projects=[project_message(p) for p in found], pagination=page.describe(total)
        )

    async def CreateProject(
        self, request: workspace_pb2.CreateProjectRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.CreateProjectResponse:
        identity = require_identity()

        async def create() -> workspace_pb2.CreateProjectResponse:
            project = await self._cases.projects.create(
                identity.user_id,
                request.name,
                request.template,
                lambda: self._cases.authors.author(identity),
            )
            return workspace_pb2.CreateProjectResponse(project=project_message(project))

        return await self._cases.idempotency.run(
            request, workspace_pb2.CreateProjectResponse, create
        )

    async def GetProject(
        self, request: workspace_pb2.GetProjectRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.GetProjectResponse:
        located = await self._cases.projects.locate(require_identity().user_id, request.id, "id")
        return workspace_pb2.GetProjectResponse(project=project_message(located.project))

    async def RenameProject(
        self, request: workspace_pb2.RenameProjectRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.RenameProjectResponse:
        renamed = await self._cases.projects.rename(
            require_identity().user_id, request.id, request.name
        )
        return workspace_pb2.RenameProjectResponse(project=project_message(renamed))

    async def DeleteProject(
        self, request: workspace_pb2.DeleteProjectRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.DeleteProjectResponse:
        await self._cases.projects.delete(require_identity().user_id, request.id)
        return workspace_pb2.DeleteProjectResponse()

    async def ResolveProject(
        self, request: workspace_pb2.ResolveProjectRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.ResolveProjectResponse:
        resolved = await self._cases.projects.resolve(
            require_identity().user_id, request.project_id
        )
        if resolved.project is None:
            return workspace_pb2.ResolveProjectResponse(directory=str(resolved.directory))
        return workspace_pb2.ResolveProjectResponse(
            project_id=resolved.project.id,
            name=resolved.project.name,
            directory=str(resolved.directory),
        )

    # --- files ---------------------------------------------------------------------------------

    async def ListFiles(
        self, request: workspace_pb2.ListFilesRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.ListFilesResponse:
        page = page_of(request.page, request.limit)
        located = await self._project(request.project)
        found, total = await self._cases.files.list(located.directory, request.path, page)
        return workspace_pb2.ListFilesResponse(
            entries=[entry_message(e) for e in found], pagination=page.describe(total)
        )

    async def GetFile(
        self, request: workspace_pb2.GetFileRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.GetFileResponse:
        located = await self._project(request.project)
        found = await self._cases.files.read(located.directory, request.path)
        return workspace_pb2.GetFileResponse(file=content_message(located.project.id, found))

    async def CreateFile(
        self, request: workspace_pb2.CreateFileRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.CreateFileResponse:
        async def create() -> workspace_pb2.CreateFileResponse:
            project, written = await self._cases.writes.create(
                require_identity(),
                request.project,
                request.path,
                request.content,
                request.encoding,
                directory=request.directory,
            )
            return workspace_pb2.CreateFileResponse(file=written_message(project.id, written))

        return await self._cases.idempotency.run(request, workspace_pb2.CreateFileResponse, create)

    async def UpdateFile(
        self, request: workspace_pb2.UpdateFileRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.UpdateFileResponse:
        project, written = await self._cases.writes.update(
            require_identity(),
            request.project,
            request.path,
            request.content,
            request.encoding,
            request.sha,
        )
        return workspace_pb2.UpdateFileResponse(file=written_message(project.id, written))

    async def DeleteFile(
        self, request: workspace_pb2.DeleteFileRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.DeleteFileResponse:
        await self._cases.writes.delete(
            require_identity(), request.project, request.path, recursive=request.recursive
        )
        return workspace_pb2.DeleteFileResponse()

    async def MoveFile(
        self, request: workspace_pb2.MoveFileRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.MoveFileResponse:
        entry = await self._cases.writes.move(
            require_identity(), request.project, request.path, request.new_path
        )
        return workspace_pb2.MoveFileResponse(entry=entry_message(entry))

    async def UploadFile(
        self,
        request_iterator: AsyncIterator[workspace_pb2.UploadFileRequest],
        context: grpc.aio.ServicerContext,
    ) -> workspace_pb2.UploadFileResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            raise InvalidArgument("an upload needs at least one message naming its file")

        async def chunks() -> AsyncIterator[bytes]:
            if first.body.data:
                yield first.body.data
            async for message in request_iterator:
                if message.body.data:
                    yield message.body.data
            # grpc.aio ends the request stream the same way whether the client finished or
            # cancelled; the cancellation arrives a moment later. One round trip through the
            # call (sending the headers) lets it land first: a cancelled upload then raises
            # CancelledError here, before anything is renamed into place.
            await context.send_initial_metadata(())

        project, written = await self._cases.writes.upload(
            require_identity(), first.project, first.path, chunks()
        )
        return workspace_pb2.UploadFileResponse(file=written_message(project.id, written))

    async def DownloadFile(
        self, request: workspace_pb2.DownloadFileRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        located = await self._project(request.project)
        content_type, chunks = await self._cases.files.download(located.directory, request.path)
        empty = True
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                empty = False
                yield httpbody_pb2.HttpBody(content_type=content_type, data=chunk)
        if empty:  # the first chunk names the content type, even for an empty file
            yield httpbody_pb2.HttpBody(content_type=content_type)

    async def WatchFiles(
        self, request: workspace_pb2.WatchFilesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[workspace_pb2.WatchFilesResponse]:
        located = await self._project(request.project)
        batches = await self._cases.watchers.start(located.directory)
        # Headers go out once the first scan is taken: every later change is reported.
        await context.send_initial_metadata(())
        async with contextlib.aclosing(batches):
            async for batch in batches:
                for event in batch:
                    yield event_message(event)

    # --- git -----------------------------------------------------------------------------------

    async def GitStatus(
        self, request: workspace_pb2.GitStatusRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.GitStatusResponse:
        located = await self._project(request.project)
        return status_message(await self._cases.git.status(located.directory))

    async def GitLog(
        self, request: workspace_pb2.GitLogRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.GitLogResponse:
        located = await self._project(request.project)
        commits = await self._cases.git.log(
            located.directory, limit=request.limit or DEFAULT_LOG_LIMIT
        )
        return workspace_pb2.GitLogResponse(commits=[commit_message(c) for c in commits])

    async def GitDiff(
        self, request: workspace_pb2.GitDiffRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.GitDiffResponse:
        located = await self._project(request.project)
        diff = await self._cases.git.diff(
            located.directory, staged=request.staged, path=request.path or None
        )
        return workspace_pb2.GitDiffResponse(diff=diff)

    async def ListBranches(
        self, request: workspace_pb2.ListBranchesRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.ListBranchesResponse:
        located = await self._project(request.project)
        branches = await self._cases.git.branches(located.directory)
        return workspace_pb2.ListBranchesResponse(branches=[branch_message(b) for b in branches])

    async def CreateBranch(
        self, request: workspace_pb2.CreateBranchRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.CreateBranchResponse:
        async def create() -> workspace_pb2.CreateBranchResponse:
            branch = await self._cases.versioning.create_branch(
                require_identity(), request.project, request.name
            )
            return workspace_pb2.CreateBranchResponse(branch=branch_message(branch))

        return await self._cases.idempotency.run(
            request, workspace_pb2.CreateBranchResponse, create
        )

    async def SwitchBranch(
        self, request: workspace_pb2.SwitchBranchRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.SwitchBranchResponse:
        branch = await self._cases.versioning.switch_branch(
            require_identity(), request.project, request.name
        )
        return workspace_pb2.SwitchBranchResponse(branch=branch_message(branch))

    async def ListRemotes(
        self, request: workspace_pb2.ListRemotesRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.ListRemotesResponse:
        located = await self._project(request.project)
        remotes = await self._cases.git.remotes(located.directory)
        return workspace_pb2.ListRemotesResponse(remotes=[remote_message(r) for r in remotes])

    async def AddRemote(
        self, request: workspace_pb2.AddRemoteRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.AddRemoteResponse:
        await self._cases.versioning.add_remote(
            require_identity(), request.project, request.name, request.url
        )
        return workspace_pb2.AddRemoteResponse(
            remote=workspace_pb2.GitRemote(name=request.name, url=request.url)
        )

    async def GitCommit(
        self, request: workspace_pb2.GitCommitRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.GitCommitResponse:
        committed = await self._cases.versioning.commit(
            require_identity(), request.project, request.message, request.paths
        )
        return workspace_pb2.GitCommitResponse(
            commit=committed.sha,
            author_name=committed.author.name,
            author_email=committed.author.email,
        )

    async def GitPush(
        self, request: workspace_pb2.GitPushRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.GitPushResponse:
        pushed = await self._cases.versioning.push(
            require_identity(), request.project, request.remote, request.branch
        )
        return workspace_pb2.GitPushResponse(
            summary=pushed.summary, branch=pushed.branch, remote=pushed.remote
        )

    async def GitPull(
        self, request: workspace_pb2.GitPullRequest, context: grpc.aio.ServicerContext
    ) -> workspace_pb2.GitPullResponse:
        pulled = await self._cases.versioning.pull(
            require_identity(), request.project, request.remote, request.branch
        )
        return workspace_pb2.GitPullResponse(summary=pulled.summary, commit=pulled.commit)
