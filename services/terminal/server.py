"""Builds the terminal service's server parts from its config."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import grpc
from stockfolio.terminal.v1 import terminal_pb2, terminal_pb2_grpc

from services.runtime.account_deletions import MemoryCursor, follow_account_deletions
from services.runtime.auth import SessionChecker, SessionExpired, SessionRevoked
from services.runtime.cache import Cache, create_cache, subscribe_live
from services.runtime.cached_idempotency import CachedIdempotency
from services.runtime.config import RuntimeConfig
from services.runtime.context import Identity
from services.runtime.errors import DomainError, Unauthenticated
from services.runtime.ownership import Ownership, advertised_address
from services.runtime.sandbox import Sandbox
from services.runtime.server import ServiceParts
from services.runtime.sessions import REVOKED_ELSEWHERE, remote_sessions
from services.runtime.streams import follow_forever
from services.runtime.tasks import cancel_and_wait
from services.terminal.config import load_terminal_config
from services.terminal.logins import Logins
from services.terminal.manager import TerminalManager
from services.terminal.projects import ProjectDirectories
from services.terminal.servicer import TerminalServicer
from services.terminal.sessions import Session
from services.terminal.terminals import Terminals, facts_of

SERVICE = terminal_pb2.DESCRIPTOR.services_by_name["TerminalService"]
# Seconds a new subscription to the revocations waits to be live.
SUBSCRIBE_WAIT = 5.0


def session_over(sessions: SessionChecker) -> Callable[[Identity], Awaitable[DomainError | None]]:
    """None while the identity's session stands; once the users service says it is over, the
    refusal that says how: logged out (of it, or everywhere), past its own end, or its token
    signed with a key users has withdrawn (what that key signed is cut off). Asked with the
    identity's token, expired or not (CheckSession takes it lapsed); a check that cannot be
    made raises, and decides nothing (a token that expired on its way to an earlier users
    release, too)."""

    async def over(identity: Identity) -> DomainError | None:
        try:
            if await sessions.is_live(identity):
                return None
            return SessionRevoked("this session has ended (logged out); sign in again")
        except SessionExpired as expired:
            return expired
        except Unauthenticated as refused:
            if refused.reason == "TOKEN_INVALID":
                return refused
            raise

    return over


def owner_still_logged_in(
    sessions: SessionChecker, logins: Logins
) -> Callable[[Session], Awaitable[bool]]:
    """The manager's recheck of a shell: False once none of the logins its owner was seen with
    is live (a logout everywhere, or each past its end), not when one of them logs out and
    another goes on. Each is asked about with the freshest token seen of it, however long ago
    (a shell nobody touched for an hour still ends at its owner's logout). A check that cannot
    be made (users unreachable) raises, and decides nothing."""
    over = session_over(sessions)

    async def still_allowed(session: Session) -> bool:
        seen = logins.of(session.owner)
        for login in seen:
            if await over(login) is None:
                return True
            logins.drop(login)
        return not seen  # none ever seen: nothing to decide by

    return still_allowed


async def follow_revocations(cache: Cache, manager: TerminalManager) -> None:
    """End the shells of each user the users service announces as logged out everywhere."""
    ending: set[asyncio.Task[list[str]]] = set()

    def end_shells_of(raw: bytes) -> None:
        task = asyncio.get_running_loop().create_task(manager.close_owner(raw.decode()))
        ending.add(task)
        task.add_done_callback(ending.discard)

    await follow_forever(
        lambda live: subscribe_live(cache, REVOKED_ELSEWHERE, live, SUBSCRIBE_WAIT),
        end_shells_of,
        name="revocations",
    )


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
        if not any(s.id != session.id for s in manager.sessions_of(session.owner)):
            logins.forget_owner(session.owner)
        await ownership.forget(session.id)

    async def ended(session: Session) -> None:
        # Lists served by another replica show it ended, with its exit code.
        await ownership.update(session.id, session.owner, facts_of(session))

    # The logins each owner of a shell here was seen with, for the logout recheck.
    logins = Logins(lambda owner: bool(manager.sessions_of(owner)))
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
        still_allowed=owner_still_logged_in(sessions, logins),
        recheck_interval=settings.session_recheck,
        on_closed=forget,
        on_ended=ended,
    )
    # Owned by the resources: whatever happens after this, its shells end and its tasks stop.
    await resources.enter_async_context(manager)
    if config.redis_url:
        # A user whose every session ended: their shells end now, not at the next recheck.
        follower = asyncio.get_running_loop().create_task(follow_revocations(cache, manager))
        resources.push_async_callback(cancel_and_wait, follower)
    projects = ProjectDirectories(
        config.addresses["workspace"], deadline=settings.workspace_deadline
    )
    resources.push_async_callback(projects.close)
    terminals = Terminals(
        manager, projects, settings.root, ownership, logins, session_over=session_over(sessions)
    )
    # A deleted account's shells end on every replica (each owns its own), from a cursor of
    # the process's: a replica that starts holds no shell of anyone's yet.
    await follow_account_deletions(
        config,
        resources,
        terminals.erase_owner,
        MemoryCursor(),
        interval=settings.purge_interval,
    )
    servicer = TerminalServicer(
        terminals,
        manager,
        settings,
        idempotency=CachedIdempotency(cache, ownership.exclusive),
    )

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
