"""The users service's own session check: the database is the source of truth.

Answers are remembered for a short time (SESSION_CHECK_TTL) in this process and, when Redis is
configured, shared between replicas; a revocation here forgets the local answer at once and
overwrites the shared one, so the next check anywhere sees it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from services.runtime.auth import TtlMemo
from services.runtime.cache import Cache
from services.runtime.context import Identity
from services.runtime.db import Database
from services.users.repository import SessionRepository

LIVE = b"1"
REVOKED = b"0"


class LocalSessionChecker:
    def __init__(self, db: Database, cache: Cache, *, ttl: float) -> None:
        self._db = db
        self._cache = cache
        self._memo: TtlMemo[bool] = TtlMemo(ttl)
        self._ttl = ttl

    async def is_live(self, identity: Identity) -> bool:
        return await self._memo.get(identity.session_id, lambda: self._lookup(identity))

    async def _lookup(self, identity: Identity) -> bool:
        key = f"session:{identity.session_id}"
        shared = await self._cache.get(key)
        if shared is not None:
            return shared == LIVE
        async with self._db.reading() as session:
            live = await SessionRepository(session).is_live(identity.session_id, datetime.now(UTC))
        await self._cache.set(key, LIVE if live else REVOKED, ttl=self._ttl)
        return live

    async def revoked(self, session_ids: list[str]) -> None:
        """Called after a revocation commits."""
        for session_id in session_ids:
            self._memo.forget(session_id)
            await self._cache.set(f"session:{session_id}", REVOKED, ttl=self._ttl * 2)
