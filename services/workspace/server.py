"""Builds the workspace service's server parts from its config."""

from __future__ import annotations

import contextlib

import grpc
from stockfolio.workspace.v1 import workspace_pb2, workspace_pb2_grpc

from services.runtime.config import RuntimeConfig
from services.runtime.server import ServiceParts
from services.runtime.sessions import remote_sessions
from services.workspace.servicer import WorkspaceServiceServicer

SERVICE = workspace_pb2.DESCRIPTOR.services_by_name["WorkspaceService"]


async def build(config: RuntimeConfig, resources: contextlib.AsyncExitStack) -> ServiceParts:
    # The generated stubs mark every RPC abstract; at run time the base class answers
    # UNIMPLEMENTED, which is what this service does until its issue lands.
    servicer = WorkspaceServiceServicer()  # type: ignore[abstract]

    def register(server: grpc.aio.Server) -> None:
        workspace_pb2_grpc.add_WorkspaceServiceServicer_to_server(servicer, server)

    return ServiceParts(
        services=[SERVICE], register=register, sessions=await remote_sessions(config, resources)
    )
