"""Idempotency keys for a service with no database (the terminal): the first response to each
key is kept in the cache (Redis, shared by the replicas; in-process without it) for a day.

A key's requests run one at a time under a lock the replicas share (`Ownership.exclusive`), so
a repeat that arrives while the first still runs waits for it and gets its response, rather
than the 409 of the database-backed store (idempotency.py), whose rules hold otherwise: the
same key with another request is 422 IDEMPOTENCY_KEY_REUSED, a first request that fails stores
nothing, and a request without a key simply runs. What such a service makes lives in its
process (a shell), so a crash between the work and storing its answer leaves nothing to repeat.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from google.protobuf.message import Message

from services.runtime.cache import Cache
from services.runtime.context import idempotency_key
from services.runtime.idempotency import DEFAULT_TTL, KeyReused, caller_key

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)
Exclusive = Callable[[str], contextlib.AbstractAsyncContextManager[None]]


class CachedIdempotency:
    def __init__(self, cache: Cache, exclusive: Exclusive, *, ttl: float = DEFAULT_TTL) -> None:
        self._cache = cache
        self._exclusive = exclusive
        self._ttl = ttl

    async def run(
        self, request: Message, response_type: type[M], handler: Callable[[], Awaitable[M]]
    ) -> M:
        """`handler` once per key, as IdempotencyStore.run."""
        key = idempotency_key.get()
        if not key:
            return await handler()
        user_id, request_hash = caller_key(key, request)
        # Hashed: a key is the client's text, and the cache's key is ours.
        name = f"idempotency:{user_id}:{hashlib.sha256(key.encode()).hexdigest()}"
        async with self._exclusive(name):
            stored = await self._cache.get(name)
            if stored is not None:
                stored_hash, _, response = stored.partition(b"\n")
                if stored_hash.decode() != request_hash:
                    raise KeyReused()
                return response_type.FromString(response)
            answer = await handler()
            kept = request_hash.encode() + b"\n" + answer.SerializeToString(deterministic=True)
            try:
                await self._cache.set(name, kept, ttl=self._ttl)
            except Exception:  # done all the same: only a retry would run it again
                log.warning("an idempotent answer was not kept", exc_info=True)
            return answer
