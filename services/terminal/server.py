"""Builds the terminal service's server parts from its config."""

from __future__ import annotations

import contextlib

import grpc
from stockfolio.terminal.v1 import terminal_pb2, terminal_pb2_grpc

from services.runtime.config import RuntimeConfig
from services.runtime.server import ServiceParts
from services.runtime.sessions import remote_sessions
from services.terminal.servicer import TerminalServiceServicer

SERVICE = terminal_pb2.DESCRIPTOR.services_by_name["TerminalService"]


async def build(config: RuntimeConfig, resources: contextlib.AsyncExitStack) -> ServiceParts:
    # The generated stubs mark every RPC abstract; at run time the base class answers
    # UNIMPLEMENTED, which is what this service does until its issue lands.
    servicer = TerminalServiceServicer()  # type: ignore[abstract]

    def register(server: grpc.aio.Server) -> None:
        terminal_pb2_grpc.add_TerminalServiceServicer_to_server(servicer, server)

    return ServiceParts(
        services=[SERVICE], register=register, sessions=await remote_sessions(config, resources)
    )
