"""Builds the terminal service's server parts from its config."""

from __future__ import annotations

import contextlib

import grpc
from stockfolio.terminal.v1 import terminal_pb2, terminal_pb2_grpc

from services.terminal.servicer import TerminalServiceServicer
from services.runtime.config import RuntimeConfig
from services.runtime.server import ServiceParts
from services.runtime.sessions import remote_sessions

SERVICE = terminal_pb2.DESCRIPTOR.services_by_name["TerminalService"]


async def build(config: RuntimeConfig, resources: contextlib.AsyncExitStack) -> ServiceParts:
    servicer = TerminalServiceServicer()

    def register(server: grpc.aio.Server) -> None:
        terminal_pb2_grpc.add_TerminalServiceServicer_to_server(servicer, server)

    return ServiceParts(
        services=[SERVICE], register=register, sessions=await remote_sessions(config, resources)
    )
