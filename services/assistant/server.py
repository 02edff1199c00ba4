"""Builds the assistant service's server parts from its config."""

from __future__ import annotations

import contextlib

import grpc
from stockfolio.assistant.v1 import assistant_pb2, assistant_pb2_grpc

from services.assistant.servicer import AssistantServiceServicer
from services.runtime.config import RuntimeConfig
from services.runtime.server import ServiceParts
from services.runtime.sessions import remote_sessions

SERVICE = assistant_pb2.DESCRIPTOR.services_by_name["AssistantService"]


async def build(config: RuntimeConfig, resources: contextlib.AsyncExitStack) -> ServiceParts:
    # The generated stubs mark every RPC abstract; at run time the base class answers
    # UNIMPLEMENTED, which is what this service does until its issue lands.
    servicer = AssistantServiceServicer()  # type: ignore[abstract]

    def register(server: grpc.aio.Server) -> None:
        assistant_pb2_grpc.add_AssistantServiceServicer_to_server(servicer, server)

    return ServiceParts(
        services=[SERVICE], register=register, sessions=await remote_sessions(config, resources)
    )
