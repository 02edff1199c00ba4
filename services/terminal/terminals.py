"""The terminal service's use cases, for one caller: their sessions only, admins' wider views.

A user sees and controls only their own sessions: another user's session is answered exactly as
an unknown one (404). Admins may list every session and see every user in the stats.

At several replicas each session lives on the one that started it, which records itself as its
owner (services/runtime/ownership.py); the facade routes calls naming a session there. A session
whose owner is gone is reported exited with reason `replica_lost` by whichever replica is asked;
lists hold the sessions of every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from services.runtime import procfs
from services.runtime.context import Identity
from services.runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.runtime.ownership import Owned, Ownership
from services.runtime.pagination import Page
from services.terminal.attachments import (
    Apply,
    Ended,
    Frame,
    SessionOver,
    Told,
    attached,
    until_revoked,
)
from services.terminal.logins import Logins
from services.terminal.manager import TerminalManager
from services.terminal.projects import ProjectDirectories
from services.terminal.sessions import History, Session

MAX_SESSION_ID = 128
REPLICA_LOST = "replica_lost"


class SessionLost(FailedPrecondition):
    """The session's replica is gone, and its shell with it: it can only be read or closed."""

    reason = "REPLICA_LOST"


@dataclass(frozen=True)
class Recorded:
    """A session of another replica, as its owner recorded it when it started; `lost` when that
    owner is gone (the session is then reported exited, reason `replica_lost`)."""

    id: str
    owner: str
    shell: str
    project_id: str
    cols: int
    rows: int
    pid: int
    created: datetime
    lost: bool
    ended: str = ""  # "exited" or "closed" once the owner saw the shell end
    code: int | None = None

    @property
    def state(self) -> str:
        # A shell that had ended before its replica was lost ended as it did.
        return self.ended or (REPLICA_LOST if self.lost else "running")

    @property
    def last_activity(self) -> datetime:
        return self.created

    @property
    def watchers(self) -> int:
        return 0  # known only to its owner

    @property
    def exit_code(self) -> int | None:
        return self.code

    @classmethod
    def of(cls, owned: Owned, *, lost: bool) -> Recorded:
        facts = owned.facts
        return cls(
            id=owned.key,
            owner=owned.user,
            shell=str(facts.get("shell", "")),
            project_id=str(facts.get("projectId", "")),
            cols=int(facts.get("cols", 0)),
            rows=int(facts.get("rows", 0)),
            pid=int(facts.get("pid", 0)),
            created=datetime.fromisoformat(str(facts["created"])),
            lost=lost,
            ended="" if facts.get("state", "running") == "running" else str(facts["state"]),
            code=None if facts.get("exitCode") is None else int(facts["exitCode"]),
        )


def facts_of(session: Session) -> dict[str, Any]:
    """What a session's record keeps, to show it from another replica."""
    return {
        "shell": session.shell,
        "projectId": session.project_id,
        "cols": session.cols,
        "rows": session.rows,
        "pid": session.pid,
        "created": session.created.isoformat(),
        "state": session.state,
        "exitCode": session.exit_code,
    }


@dataclass(frozen=True)
class TerminalStats:
    """What a caller may learn of the service's load: an admin everything, others their own."""

    all_users: bool
    active_sessions: int  # the running sessions counted (an admin's: everyone's), all replicas
    replica_sessions: int  # of those, the ones on this replica (capacity against its limit)
    my_sessions: int
    users: int
    memory_bytes: int  # this service's own resident memory
    shell_memory_bytes: int  # what the counted sessions' processes hold


def _session_id(value: str) -> str:
    if not value or len(value) > MAX_SESSION_ID:
        raise InvalidArgument.field("sessionId", "is required (at most 128 characters)")
    return value


class Terminals:
    def __init__(
        self,
        manager: TerminalManager,
        projects: ProjectDirectories,
        root: Path,
        ownership: Ownership,
        logins: Logins | None = None,
        *,
        session_over: SessionOver | None = None,
    ) -> None:
        self._manager = manager
        self._projects = projects
        self._root = root
        self._ownership = ownership
        # Every caller's login, for the logout recheck (None: nothing rechecks).
        self._logins = logins
        # Whether an attachment's own login still holds (users says so), asked every
        # TERMINAL_SESSION_RECHECK: a login that ends ends its attachments (None: never asked).
        self._session_over = session_over

    async def create(
        self, identity: Identity, project_id: str, *, cols: int, rows: int, shell: str | None
    ) -> Session:
        place = await self._projects.resolve(identity, project_id)
        # The per-user limit holds across replicas: a user's creates run one at a time among
        # them, from counting what runs elsewhere to recording the new session, so two creates
        # at once on two replicas cannot both take the last place.
        async with self._ownership.exclusive(f"create:{identity.user_id}"):
            elsewhere = len(await self._running_elsewhere(identity.user_id))
            session = await self._manager.create(
                identity.user_id,
                cwd=place.directory,
                cols=cols,
                rows=rows,
                shell=shell,
                project_id=place.project_id,
                # The workspace service's layout: each user's files under <root>/<user id>.
                within=self._root / identity.user_id,
                elsewhere=elsewhere,
            )
            self._saw(identity)
            await self._ownership.claim(session.id, identity.user_id, facts_of(session))
        return session

    async def find(self, identity: Identity, session_id: str) -> Session | Recorded:
        """The caller's own session `session_id`: here, or recorded by a replica that is gone
        (lost). Anyone else's is NotFound; one whose owner lives elsewhere is Unavailable here
        (retried, round robin reaches the others)."""
        session_id = _session_id(session_id)
        try:
            session = self._manager.get(identity.user_id, session_id)
        except NotFound:
            return await self._recorded(identity, session_id)
        self._saw(identity)
        return session

    async def attach(
        self,
        identity: Identity,
        session_id: str,
        *,
        replay: bool,
        frames: AsyncIterator[Frame],
        apply: Apply[Frame],
    ) -> AsyncGenerator[Told | Recorded, None]:
        """The caller's session `session_id` attached (attachments.py); one whose replica is
        gone is told, then ends `replica_lost`."""
        found = await self.find(identity, session_id)
        if isinstance(found, Recorded):
            yield found
            yield Ended(0, REPLICA_LOST)
            return
        revoked = functools.partial(
            until_revoked, identity, self._session_over, self._manager.recheck_interval
        )
        told = attached(found, replay=replay, frames=frames, apply=apply, revoked=revoked)
        async with contextlib.aclosing(told):
            async for event in told:
                yield event

    def _saw(self, identity: Identity) -> None:
        if self._logins is not None:
            self._logins.saw(identity)

    async def running(self, identity: Identity, session_id: str) -> Session:
        """The caller's session `session_id`, which must still be here to be used."""
        found = await self.find(identity, session_id)
        if isinstance(found, Recorded):
            raise SessionLost(f"session {session_id} was lost with its replica")
        return found

    async def _recorded(self, identity: Identity, session_id: str) -> Recorded:
        owned = await self._ownership.find(session_id)
        if owned is None and not await self._ownership.reachable():
            # Redis is down: the session may well live on another replica (retried, round
            # robin reaches it), rather than not exist.
            raise Unavailable(
                f"where terminal session {session_id} runs cannot be told now; retry",
                reason="OWNER_UNKNOWN",
            )
        if owned is None or owned.user != identity.user_id or self._ownership.mine(owned):
            raise NotFound(f"no terminal session {session_id}")
        if not await self._ownership.lost(owned):
            raise Unavailable(
                f"terminal session {session_id} runs on another replica",
                reason="NOT_OWNER",
                data={"replica": owned.replica},
            )
        return Recorded.of(owned, lost=True)

    async def close(self, identity: Identity, session_id: str) -> None:
        found = await self.find(identity, session_id)
        if isinstance(found, Session):
            await self._manager.close(found.id)  # its record goes with it (the manager's hook)
            return
        owned = await self._ownership.find(found.id)
        if owned is not None:
            await self._ownership.release(owned)

    async def erase_owner(self, user_id: str) -> None:
        """A deleted account: its shells here end (their sandboxes, process groups and cgroups
        with them) and its ended ones go with their scrollback, as a close ends them; the
        logins seen of it are forgotten, and the records of its sessions on replicas that are
        gone are dropped (each replica ends its own). Idempotent."""
        await self._manager.close_owner(user_id)
        if self._logins is not None:
            self._logins.forget_owner(user_id)
        for owned, lost in await self._ownership.held(user_id):
            if lost:
                await self._ownership.release(owned)

    async def write(self, identity: Identity, session_id: str, data: bytes) -> int:
        (await self.running(identity, session_id)).write(data)
        return len(data)

    async def resize(self, identity: Identity, session_id: str, cols: int, rows: int) -> Session:
        session = await self.running(identity, session_id)
        session.resize(cols, rows)
        return session

    async def history(self, identity: Identity, session_id: str, output_bytes: int) -> History:
        """The commands typed and the last `output_bytes` of output (0: all the scrollback)."""
        session = await self.running(identity, session_id)
        if output_bytes < 0:
            raise InvalidArgument.field("outputBytes", "must be 0 (all) or more")
        return session.history(output_bytes=output_bytes or None)

    async def listing(
        self, identity: Identity, page: Page, *, all_users: bool
    ) -> tuple[list[Session | Recorded], int]:
        """One page of the caller's sessions (every user's for an admin asking for all), on
        every replica, oldest first, and how many there are. Another replica's sessions are
        shown as their owner recorded them; a lost replica's as exited, `replica_lost`."""
        if all_users and not identity.is_admin:
            raise PermissionDenied("only admins may list every user's terminals")
        self._saw(identity)  # the owner's terminal page, open on another device
        owner = None if all_users else identity.user_id
        here: list[Session | Recorded] = list(self._manager.sessions_of(owner))
        ids = {s.id for s in here}
        elsewhere = [
            Recorded.of(owned, lost=lost)
            for owned, lost in await self._ownership.held(owner)
            if owned.key not in ids and not self._ownership.mine(owned)
        ]
        found = sorted([*here, *elsewhere], key=lambda s: (s.created, s.id))
        return found[page.offset : page.offset + page.limit], len(found)

    async def _running_elsewhere(self, user: str | None) -> list[Recorded]:
        """The sessions of `user` (everyone's for None) running on the other live replicas."""
        found = [
            Recorded.of(owned, lost=lost)
            for owned, lost in await self._ownership.held(user)
            if not lost and not self._ownership.mine(owned)
        ]
        return [r for r in found if r.state == "running"]

    async def stats(self, identity: Identity) -> TerminalStats:
        """Counts over every replica; memory (this service's and its shells') of this one."""
        self._saw(identity)
        running = [s for s in self._manager.sessions_of() if s.state == "running"]
        mine = [s for s in running if s.owner == identity.user_id]
        # Service-wide counts are an admin's: anyone else learns only of their own.
        counted = running if identity.is_admin else mine
        elsewhere = await self._running_elsewhere(None if identity.is_admin else identity.user_id)
        mine_elsewhere = [r for r in elsewhere if r.owner == identity.user_id]
        return TerminalStats(
            all_users=identity.is_admin,
            active_sessions=len(counted) + len(elsewhere),
            replica_sessions=len(counted),
            my_sessions=len(mine) + len(mine_elsewhere),
            users=len({s.owner for s in counted} | {r.owner for r in elsewhere}),
            memory_bytes=await asyncio.to_thread(procfs.own_rss),
            shell_memory_bytes=await self._manager.memory(counted),
        )
