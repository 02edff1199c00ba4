"""The brute-force guard: failed logins counted per account and per client address.

It sits beside the facade's global limit on auth routes (500 per 15 minutes per address): an
attacker spreading guesses over many accounts from one address, or over many addresses at one
account, is stopped by one of the two counters. Counters live in the cache (shared by replicas
when it is Redis).
"""

from __future__ import annotations

from services.runtime.errors import ResourceExhausted
from services.runtime.ratelimit import Rate, RateLimiter


class TooManyAttempts(ResourceExhausted):
    reason = "TOO_MANY_ATTEMPTS"


class LoginGuard:
    def __init__(self, limiter: RateLimiter, *, per_account: Rate, per_address: Rate) -> None:
        self._limiter = limiter
        self._per_account = per_account
        self._per_address = per_address

    async def check(self, email: str, address: str) -> None:
        """Refuse before checking the password when either counter is exhausted."""
        if await self._limiter.peek(f"login-account:{email}", self._per_account):
            raise TooManyAttempts(
                "too many failed logins for this account; try again later",
                retry_after=self._per_account.window,
            )
        if address and await self._limiter.peek(f"login-address:{address}", self._per_address):
            raise TooManyAttempts(
                "too many failed logins from this address; try again later",
                retry_after=self._per_address.window,
            )

    async def failed(self, email: str, address: str) -> None:
        await self._limiter.hit(f"login-account:{email}", self._per_account)
        if address:
            await self._limiter.hit(f"login-address:{address}", self._per_address)

    async def succeeded(self, email: str) -> None:
        await self._limiter.reset(f"login-account:{email}")
