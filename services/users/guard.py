"""The brute-force guard: failed logins slow down the address that makes them, never another.

A failed login is any wrong password for an account: at Login, and the current password a
change of one's own password or email, or a deletion of one's own account, must give (a stolen
access token does not make them a free oracle for it).
Following OWASP's guidance, nobody can lock a user out without their password:

- failures are counted per (account, address); after `free_failures` of them, each further
  failure refuses that pair for a delay that doubles (1 s, 2 s, 4 s ... up to `max_delay`);
- failures are also counted per address across accounts (credential stuffing): past
  `per_address`, that address is refused for the rest of the window;
- failures are counted per account across addresses: past `per_account` (an account under a
  spread-out attack), failing addresses get no free failures, so their delays start at once.

An account is named by its id (its email may change, and with it would go its failures), an
email no account has by the email; an address by its block (`address_block`: an IPv6 host
holds a whole /64 and could rotate through it for fresh free failures).

Every refusal falls on an address that has failed itself; an address with no failures always
reaches the password check. Checks in flight count as failures to come: an (account, address)
has at most its free failures checked at once, and one at a time past them, so guesses sent all
together get no more checks than guesses sent one after another (100 sent at once were all
checked, where the rule allows 6); the others are refused for a second. Counters and refusals
live in the cache (shared by replicas when it is Redis), beside the facade's own limit on auth
routes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from services.runtime.addresses import address_block
from services.runtime.cache import Cache
from services.runtime.errors import ResourceExhausted
from services.runtime.ratelimit import Rate

# How long a check in flight is counted at most (a replica that dies mid-check lets go then).
ATTEMPT_HOLD = 10.0


class TooManyAttempts(ResourceExhausted):
    reason = "TOO_MANY_ATTEMPTS"


@dataclass(frozen=True)
class LoginPolicy:
    # Failures one address may make at one account before its delays begin.
    free_failures: int
    # How long the failures of one (account, address) are remembered.
    remember: float
    # The first delay, doubled at each further failure, up to `max_delay` (seconds).
    first_delay: float
    max_delay: float
    # Failures one address may make across accounts, and one account may take across
    # addresses, per window; a limit of 0 turns one off.
    per_address: Rate
    per_account: Rate

    def delay(self, failures: int, *, under_attack: bool) -> float:
        """Seconds one (account, address) must wait after its `failures`-th failure."""
        free = 0 if under_attack else self.free_failures
        beyond = failures - free
        if beyond <= 0:
            return 0.0
        # min() before the power: a pair that failed thousands of times must not overflow.
        return min(self.first_delay * 2.0 ** min(beyond - 1, 64), self.max_delay)


class LoginGuard:
    def __init__(self, cache: Cache, policy: LoginPolicy) -> None:
        self._cache = cache
        self._policy = policy

    async def check(self, account: str, address: str) -> None:
        """Refuse, before the password is checked, an address that must still wait."""
        now = time.time()
        wait = await self._waiting(_pair(account, address), now)
        if wait > 0:
            raise TooManyAttempts(
                "too many failed logins for this account from this address;"
                f" try again in {math.ceil(wait)} s",
                retry_after=wait,
            )
        wait = await self._waiting(_address(address), now)
        if wait > 0:
            raise TooManyAttempts(
                f"too many failed logins from this address; try again in {math.ceil(wait)} s",
                retry_after=wait,
            )

    async def begin(self, account: str, address: str) -> None:
        """Count this check of a password among those in flight for its (account, address),
        or refuse it (also when it must wait, as `check`); once counted, the caller calls `end`
        however the check ends."""
        pair = _pair(account, address)
        failures = await self._cache.counter(f"guard:failures:{pair}")
        room = max(1, self._policy.free_failures - failures)
        key = f"guard:trying:{pair}"
        await self._cache.seed(key, 0, ATTEMPT_HOLD)
        if await self._cache.spend(key, 1, room) == -1:
            raise TooManyAttempts(
                "other logins for this account from this address are being checked;"
                " try again in 1 s",
                retry_after=1.0,
            )
        try:
            # Again, counted: a failure that ended while this one waited may have set a wait.
            await self.check(account, address)
        except BaseException:
            await self.end(account, address)
            raise

    async def end(self, account: str, address: str) -> None:
        await self._cache.spend(f"guard:trying:{_pair(account, address)}", -1, 0)

    async def failed(self, account: str, address: str) -> None:
        policy, cache, now = self._policy, self._cache, time.time()
        pair = _pair(account, address)
        failures, _ = await cache.incr(f"guard:failures:{pair}", policy.remember)
        under_attack = False
        if not policy.per_account.unlimited:
            taken, _ = await cache.incr(
                f"guard:failures:account:{account}", policy.per_account.window
            )
            under_attack = taken > policy.per_account.limit
        delay = policy.delay(failures, under_attack=under_attack)
        if delay > 0:
            await self._refuse(pair, now + delay, delay)
        if not policy.per_address.unlimited:
            made, resets = await cache.incr(
                f"guard:failures:{_address(address)}", policy.per_address.window
            )
            if made >= policy.per_address.limit:
                await self._refuse(_address(address), now + resets, resets)

    async def succeeded(self, account: str, address: str) -> None:
        """The right password from this address: its failures at this account are forgiven
        (not those across accounts, nor the account's ceiling, which others filled)."""
        pair = _pair(account, address)
        await self._cache.delete(f"guard:failures:{pair}")
        await self._cache.delete(f"guard:wait:{pair}")

    async def _refuse(self, key: str, until: float, seconds: float) -> None:
        if seconds < 0.001:  # a window ending now: nothing to wait for (and a TTL of 0 is none)
            return
        await self._cache.set(f"guard:wait:{key}", repr(until).encode(), ttl=seconds)

    async def _waiting(self, key: str, now: float) -> float:
        raw = await self._cache.get(f"guard:wait:{key}")
        if raw is None:
            return 0.0
        try:
            return max(0.0, float(raw) - now)
        except ValueError:
            return 0.0


def _pair(account: str, address: str) -> str:
    return f"pair:{address_block(address)}|{account}"


def _address(address: str) -> str:
    return f"address:{address_block(address)}"
