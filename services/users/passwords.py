"""bcrypt hashing, always off the event loop (a check at cost 12 takes ~250 ms of CPU)."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import bcrypt

from services.users.domain import MAX_PASSWORD_BYTES


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
        """Whether `password` is the one `hashed` was made from. A password longer than bcrypt
        reads can never be one (none is ever set): it is refused, after the same check as any
        other, so the time taken tells nothing; cut to 72 bytes it opened the account to any
        password that merely began with its own."""
        loop = asyncio.get_running_loop()
        encoded = password.encode()
        too_long = len(encoded) > MAX_PASSWORD_BYTES
        target = hashed if hashed is not None else self._decoy
        checked = encoded[:MAX_PASSWORD_BYTES]  # bcrypt 5 refuses longer input outright
        matches = await loop.run_in_executor(self._pool, bcrypt.checkpw, checked, target)
        return bool(matches) and hashed is not None and not too_long

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
