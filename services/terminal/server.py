"""Builds the terminal service's server parts from its config."""

from __future__ import annotations

import contextlib

import grpc
from stockfolio.terminal.v1 import terminal_pb2, terminal_pb2_grpc

from services.runtime.config import RuntimeConfig
from services.runtime.server import ServiceParts
from services.runtime.sessions import remote_sessions
from services.terminal.config import load_terminal_config
from services.terminal.manager import TerminalManager
from services.terminal.projects import ProjectDirectories
from services.terminal.servicer import TerminalServicer

SERVICE = terminal_pb2.DESCRIPTOR.services_by_name["TerminalService"]


async def build(config: RuntimeConfig, resources: contextlib.AsyncExitStack) -> ServiceParts:
    settings = load_terminal_config(config)
    settings.root.mkdir(parents=True, exist_ok=True)
    manager = TerminalManager(
        settings.root,
        max_per_user=settings.max_sessions_per_user,
        max_total=settings.max_sessions,
        scrollback_bytes=settings.scrollback_bytes,
        idle_timeout=settings.idle_timeout,
        shells=settings.shells,
        grace=settings.close_grace,
        max_write_bytes=settings.max_write_bytes,
        watcher_buffer_bytes=settings.watcher_buffer_bytes,
        output_rate=settings.output_rate,
        # Often enough that a session outlives its idle timeout by at most a quarter of it.
        cull_interval=min(30.0, max(0.05, settings.idle_timeout / 4)),
    )
    manager.start()
    projects = ProjectDirectories(
        config.addresses["workspace"], deadline=settings.workspace_deadline
    )
    resources.push_async_callback(projects.close)
    servicer = TerminalServicer(manager, projects, settings)

    def register(server: grpc.aio.Server) -> None:
        terminal_pb2_grpc.add_TerminalServiceServicer_to_server(servicer, server)

    return ServiceParts(
        services=[SERVICE],
        register=register,
        sessions=await remote_sessions(config, resources),
        # Shutting down ends every shell's process group (SIGHUP, then SIGKILL) and reaps it.
        draining=[manager.shutdown],
    )
