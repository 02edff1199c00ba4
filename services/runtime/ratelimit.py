"""Fixed-window rate limits over the cache (shared across replicas when the cache is Redis)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.runtime.cache import Cache
from services.runtime.config import ConfigError

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RULE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(second|minute|hour|day)s?\s*$")


@dataclass(frozen=True)
class Rate:
    """`limit` hits per `window` seconds; a limit of 0 means unlimited."""

    limit: int
    window: float

    @property
    def unlimited(self) -> bool:
        return self.limit == 0


def parse_rate(name: str, text: str) -> Rate:
    """Parse `500/15minutes`, `6000/minute` or `0` (off); errors name the variable."""
    if text.strip() == "0":
        return Rate(0, 1.0)
    match = _RULE.match(text.lower())
    if not match:
        raise ConfigError(f"{name} must look like 500/15minutes or 0, got {text!r}")
    count, multiple, unit = match.groups()
    window = int(multiple or "1") * _UNITS[unit]
    if window == 0:  # every hit would open a fresh window: a limit that never limits
        raise ConfigError(f"{name} needs a window longer than zero, got {text!r}")
    return Rate(int(count), float(window))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float


class RateLimiter:
    def __init__(self, cache: Cache, *, namespace: str = "rl") -> None:
        self._cache = cache
        self._namespace = namespace

    async def hit(self, key: str, rate: Rate) -> Decision:
        if rate.unlimited:
            return Decision(True, 0, 0, 0.0)
        count, reset_after = await self._cache.incr(f"{self._namespace}:{key}", rate.window)
        return Decision(count <= rate.limit, rate.limit, max(0, rate.limit - count), reset_after)

    async def peek(self, key: str, rate: Rate) -> bool:
        """Whether `key` is already over its limit, without counting a hit."""
        if rate.unlimited:
            return False
        return await self._cache.counter(f"{self._namespace}:{key}") >= rate.limit

    async def refusal(self, key: str, rate: Rate) -> Decision | None:
        """The refusal `key` would get, with the rest of its window, once it has no room left;
        None while it has, without counting a hit then. For a budget spent only by what
        succeeds (`hit` after it) and checked before the costly part: failures spend nothing."""
        if not await self.peek(key, rate):
            return None
        # Past the limit already, one more hit refuses as the next would, and only it tells the
        # rest of the window (its first hit alone set it). Should the window end between the
        # two, this hit is the next window's first: one success counted early.
        decision = await self.hit(key, rate)
        return None if decision.allowed else decision

    async def reset(self, key: str) -> None:
        await self._cache.delete(f"{self._namespace}:{key}")
