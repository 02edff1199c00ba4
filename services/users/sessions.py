"""The users service's own session check: the database is the source of truth.

Answers are remembered for a short time (SESSION_CHECK_TTL) in this process and, when Redis is
configured, shared between replicas; a revocation here forgets the local answer at once and
overwrites the shared one, so the next check anywhere sees it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from services.runtime.auth import SessionState, TtlMemo
from services.runtime.cache import Cache
from services.runtime.context import Identity
from services.runtime.db import Database
from services.runtime.sessions import REVOKED_CHANNEL
from services.users.repository import SessionRepository

log = logging.getLogger(__name__)

# What the shared cache holds for a session (one byte each); anything else reads as revoked.
SHARED: dict[SessionState, bytes] = {
    SessionState.LIVE: b"1",
    SessionState.REVOKED: b"0",
    SessionState.EXPIRED: b"2",
}
FROM_SHARED = {value: state for state, value in SHARED.items()}


class LocalSessionChecker:
    def __init__(self, db: Database, cache: Cache, *, ttl: float) -> None:
        self._db = db
        self._cache = cache
        self._memo: TtlMemo[SessionState] = TtlMemo(ttl)
        self._ttl = ttl

    async def is_live(self, identity: Identity) -> bool:
        """See SessionChecker: False once revoked; SessionExpired past the session's end."""
        return (await self.state(identity)).is_live()

    async def state(self, identity: Identity) -> SessionState:
        return await self._memo.get(identity.session_id, lambda: self._lookup(identity))

    async def _lookup(self, identity: Identity) -> SessionState:
        key = f"session:{identity.session_id}"
        shared = await self._cache.get(key)
        if shared is not None:
            return FROM_SHARED.get(shared, SessionState.REVOKED)
        async with self._db.reading() as session:
            ends = await SessionRepository(session).ends_at(identity.session_id)
        found = session_state(ends, datetime.now(UTC))
        await self._cache.set(key, SHARED[found], ttl=self._ttl)
        return found

    async def revoked(self, session_ids: list[str]) -> None:
        """Called after a revocation commits."""
        for session_id in session_ids:
            self._memo.forget(session_id)
            await self._cache.set(
                f"session:{session_id}", SHARED[SessionState.REVOKED], ttl=self._ttl * 2
            )

    async def all_revoked(self, user_id: str) -> None:
        """Called after every session of `user_id` was revoked (a logout everywhere, a role
        change, the account deleted)."""
        try:
            await self._cache.publish(REVOKED_CHANNEL, user_id.encode())
        except Exception:  # the recheck of each service still ends what it holds, later
            log.warning("revocation not announced", exc_info=True)


def session_state(ends: datetime | None, now: datetime) -> SessionState:
    """A session's state from when it ends by itself (SessionRepository.ends_at: None once
    revoked, or never opened)."""
    if ends is None:
        return SessionState.REVOKED
    return SessionState.LIVE if ends > now else SessionState.EXPIRED
