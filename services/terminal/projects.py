"""Where a shell starts: the workspace service names the directory of the caller's project.

The call carries the caller's own token (never a service token), so the workspace service
applies its own rule - a user reaches only their own projects - and the terminal service never
guesses a path from an id. The directory it answers is relative to the workspace root (the
host's layout is no caller's business); the manager joins it with the configured root and
checks again that it lies inside before starting a shell there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from stockfolio.workspace.v1 import workspace_pb2, workspace_pb2_grpc

from services.runtime.channels import create_channel
from services.runtime.context import Identity
from services.runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from services.runtime.interceptors import outgoing_metadata
from services.runtime.status import parse_status

WORKSPACE_SERVICE = workspace_pb2.DESCRIPTOR.services_by_name["WorkspaceService"]


@dataclass(frozen=True)
class Place:
    project_id: str
    directory: Path


class ProjectDirectories:
    """Asks the workspace service (every replica, round robin) for project directories."""

    def __init__(self, addresses: Sequence[str], *, deadline: float) -> None:
        self._deadline = deadline
        self._channel = create_channel(addresses, [WORKSPACE_SERVICE], deadline=deadline)
        self._stub = workspace_pb2_grpc.WorkspaceServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def resolve(self, identity: Identity, project_id: str) -> Place:
        """The project's directory, or the caller's own root when `project_id` is empty."""
        request = workspace_pb2.ResolveProjectRequest(project_id=project_id)
        try:
            reply = await self._stub.ResolveProject(
                request, metadata=outgoing_metadata(identity), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"no project {project_id}", reason="PROJECT_NOT_FOUND") from None
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument.field("projectId", error.details() or "is invalid") from None
            # The caller's own session or rights, judged afresh by the workspace (a logout that
            # this service has not seen yet): the caller's error, told as such, never a 503.
            if code == grpc.StatusCode.UNAUTHENTICATED:
                raise Unauthenticated(
                    error.details() or "session has ended; log in again",
                    reason=_reason(error, "SESSION_REVOKED"),
                ) from None
            if code == grpc.StatusCode.PERMISSION_DENIED:
                raise PermissionDenied(error.details() or "not allowed") from None
            # The project's folder as the caller left it (swapped for a link in their own
            # shell: PROJECT_FOLDER_REPLACED): theirs to put back, not ours to retry.
            if code == grpc.StatusCode.FAILED_PRECONDITION:
                raise FailedPrecondition(
                    error.details() or "the project cannot be opened",
                    reason=_reason(error, "FAILED_PRECONDITION"),
                ) from None
            raise Unavailable(
                "the workspace service could not name the project's directory; retry shortly"
            ) from None
        return Place(project_id=reply.project_id, directory=Path(reply.directory))


def _reason(error: grpc.aio.AioRpcError, default: str) -> str:
    """The ErrorInfo reason the other service gave, so the caller sees the same code."""
    status = parse_status(error.trailing_metadata())
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.reason:
            return str(info.reason)
    return default
