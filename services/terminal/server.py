"""Builds the terminal service's server parts from its config."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import grpc
from stockfolio.terminal.v1 import terminal_pb2, terminal_pb2_grpc

from services.runtime.auth import SessionChecker
from services.runtime.cache import create_cache
from services.runtime.config import RuntimeConfig
from services.runtime.context import Identity
from services.runtime.ownership import Ownership, advertised_address
from services.runtime.sandbox import Sandbox
from services.runtime.server import ServiceParts
from services.runtime.sessions import remote_sessions
from services.terminal.config import load_terminal_config
from services.terminal.manager import TerminalManager
from services.terminal.projects import ProjectDirectories
from services.terminal.servicer import TerminalServicer
from services.terminal.sessions import Session
from services.terminal.terminals import Terminals, facts_of

SERVICE = terminal_pb2.DESCRIPTOR.services_by_name["TerminalService"]


# A token this close to its expiry is not used for the logout recheck: it could expire on the
# way, and an expired token would read as a logout.
_EXPIRY_MARGIN = timedelta(seconds=30)


def owner_still_logged_in(sessions: SessionChecker) -> Callable[[Session], Awaitable[bool]]:
    """The manager's recheck: False only when the users service says the owner's session was
    revoked (a logout everywhere ends every token's session)."""

    async def still_allowed(session: Session) -> bool:
        identity = session.credential
        if not isinstance(identity, Identity):
            return True
        if identity.expires_at - _EXPIRY_MARGIN <= datetime.now(UTC):
            return True  # cannot tell any more; the idle cull still applies
        return await sessions.is_live(identity)

    return still_allowed


async def build(config: RuntimeConfig, resources: contextlib.AsyncExitStack) -> ServiceParts:
    settings = load_terminal_config(config)
    settings.root.mkdir(parents=True, exist_ok=True)
    sandbox = Sandbox.create(settings.sandbox)
    resources.callback(sandbox.close)
    sessions = await remote_sessions(config, resources)
    # Where each session lives, for the facade to route to it (Redis when configured; with one
    # replica and no Redis, in-process: the facade then finds no record and round robin is
    # right). The same prefix as the facade's cache: it reads these records.
    cache = create_cache(config.redis_url, prefix="sf:")
    resources.push_async_callback(cache.close)
    ownership = Ownership(cache, "terminal")
    resources.push_async_callback(ownership.stop)

    async def forget(session: Session) -> None:
        await ownership.forget(session.id)

    async def ended(session: Session) -> None:
        # Lists served by another replica show it ended, with its exit code.
        await ownership.update(session.id, session.owner, facts_of(session))

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
        sandbox=sandbox,
        still_allowed=owner_still_logged_in(sessions),
        recheck_interval=settings.session_recheck,
        on_closed=forget,
        on_ended=ended,
    )
    # Owned by the resources: whatever happens after this, its shells end and its tasks stop.
    await resources.enter_async_context(manager)
    projects = ProjectDirectories(
        config.addresses["workspace"], deadline=settings.workspace_deadline
    )
    resources.push_async_callback(projects.close)
    terminals = Terminals(manager, projects, settings.root, ownership)
    servicer = TerminalServicer(terminals, manager, settings)

    async def advertise(port: int) -> None:
        await ownership.start(advertised_address(config.host, port))

    def register(server: grpc.aio.Server) -> None:
        terminal_pb2_grpc.add_TerminalServiceServicer_to_server(servicer, server)

    return ServiceParts(
        services=[SERVICE],
        register=register,
        sessions=sessions,
        serving=[advertise],
        # Shutting down gives up the lease first (the facade then reports this replica's
        # sessions lost at once), then ends every shell's process group (SIGHUP, then SIGKILL)
        # and reaps it.
        draining=[ownership.stop, manager.shutdown],
    )
