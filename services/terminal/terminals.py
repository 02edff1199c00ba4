"""The terminal service's use cases, for one caller: their sessions only, admins' wider views.

A user sees and controls only their own sessions: another user's session is answered exactly as
an unknown one (404). Admins may list every session and see every user in the stats.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from services.runtime.context import Identity
from services.runtime.errors import InvalidArgument, PermissionDenied
from services.runtime.pagination import Page
from services.terminal import procfs
from services.terminal.manager import TerminalManager
from services.terminal.projects import ProjectDirectories
from services.terminal.sessions import History, Session

MAX_SESSION_ID = 128


@dataclass(frozen=True)
class TerminalStats:
    """What a caller may learn of the service's load: an admin everything, others their own."""

    all_users: bool
    active_sessions: int  # the running sessions counted (an admin's: everyone's)
    my_sessions: int
    users: int
    memory_bytes: int  # this service's own resident memory
    shell_memory_bytes: int  # what the counted sessions' processes hold


def _session_id(value: str) -> str:
    if not value or len(value) > MAX_SESSION_ID:
        raise InvalidArgument.field("sessionId", "is required (at most 128 characters)")
    return value


def _remember(session: Session, identity: Identity) -> None:
    """Keeps the owner's freshest token on the session, for the logout recheck."""
    known = session.credential
    if not isinstance(known, Identity) or identity.expires_at >= known.expires_at:
        session.credential = identity


class Terminals:
    def __init__(self, manager: TerminalManager, projects: ProjectDirectories, root: Path) -> None:
        self._manager = manager
        self._projects = projects
        self._root = root

    async def create(
        self, identity: Identity, project_id: str, *, cols: int, rows: int, shell: str | None
    ) -> Session:
        place = await self._projects.resolve(identity, project_id)
        session = await self._manager.create(
            identity.user_id,
            cwd=place.directory,
            cols=cols,
            rows=rows,
            shell=shell,
            project_id=place.project_id,
            # The workspace service's layout: each user's files under <root>/<user id>.
            within=self._root / identity.user_id,
        )
        _remember(session, identity)
        return session

    def find(self, identity: Identity, session_id: str) -> Session:
        """The caller's own session `session_id` (anyone else's is NotFound)."""
        session = self._manager.get(identity.user_id, _session_id(session_id))
        _remember(session, identity)
        return session

    async def close(self, identity: Identity, session_id: str) -> None:
        await self._manager.close(self.find(identity, session_id).id)

    def write(self, identity: Identity, session_id: str, data: bytes) -> int:
        self.find(identity, session_id).write(data)
        return len(data)

    def resize(self, identity: Identity, session_id: str, cols: int, rows: int) -> Session:
        session = self.find(identity, session_id)
        session.resize(cols, rows)
        return session

    def history(self, identity: Identity, session_id: str, output_bytes: int) -> History:
        """The commands typed and the last `output_bytes` of output (0: all the scrollback)."""
        session = self.find(identity, session_id)
        if output_bytes < 0:
            raise InvalidArgument.field("outputBytes", "must be 0 (all) or more")
        return session.history(output_bytes=output_bytes or None)

    def listing(
        self, identity: Identity, page: Page, *, all_users: bool
    ) -> tuple[list[Session], int]:
        """One page of the caller's sessions (every user's for an admin asking for all), oldest
        first, and how many there are."""
        if all_users and not identity.is_admin:
            raise PermissionDenied("only admins may list every user's terminals")
        owner = None if all_users else identity.user_id
        found = sorted(self._manager.sessions_of(owner), key=lambda s: (s.created, s.id))
        return found[page.offset : page.offset + page.limit], len(found)

    async def stats(self, identity: Identity) -> TerminalStats:
        running = [s for s in self._manager.sessions_of() if s.state == "running"]
        mine = [s for s in running if s.owner == identity.user_id]
        # Service-wide counts are an admin's: anyone else learns only of their own.
        counted = running if identity.is_admin else mine
        return TerminalStats(
            all_users=identity.is_admin,
            active_sessions=len(counted),
            my_sessions=len(mine),
            users=len({s.owner for s in counted}),
            memory_bytes=await asyncio.to_thread(procfs.own_rss),
            shell_memory_bytes=await self._manager.memory(counted),
        )
