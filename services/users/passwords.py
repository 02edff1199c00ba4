"""bcrypt hashing, always off the event loop (a check at cost 12 takes ~250 ms of CPU)."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import bcrypt


class PasswordHasher:
    """bcrypt releases the GIL, so a pool as wide as the machine hashes in parallel."""

    def __init__(self, cost: int) -> None:
        self._cost = cost
        self._pool = ThreadPoolExecutor(
            max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="bcrypt"
        )
        # Checked against when the email is unknown, so both failures cost the same time.
        self._decoy = bcrypt.hashpw(b"decoy-password-0", bcrypt.gensalt(cost))

    async def hash(self, password: str) -> bytes:
        loop = asyncio.get_running_loop()
        salt = bcrypt.gensalt(self._cost)
        return await loop.run_in_executor(self._pool, bcrypt.hashpw, password.encode(), salt)

    async def verify(self, password: str, hashed: bytes | None) -> bool:
        loop = asyncio.get_running_loop()
        candidate = password.encode()[:72]
        target = hashed if hashed is not None else self._decoy
        matches = await loop.run_in_executor(self._pool, bcrypt.checkpw, candidate, target)
        return bool(matches) and hashed is not None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
