"""Per-user caps on what a user holds open at this facade replica (WebSockets, file watches,
chat session joins), and the per-socket message rate (a token bucket).

Caps are counted per replica, in memory: what a replica holds open dies with it, so a counter
in a shared cache could only leak. Behind N replicas a user may hold up to N times a cap.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from facade.envelope import ApiError

SOCKETS = "sockets"
WATCHES = "watches"
CHAT_JOINS = "chat joins"


class Slot:
    """One unit of a cap, held until released (once; releasing again does nothing)."""

    __slots__ = ("_caps", "_key", "_released")

    def __init__(self, caps: UserCaps, key: tuple[str, str]) -> None:
        self._caps = caps
        self._key = key
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._caps.give_back(self._key)


class UserCaps:
    """How many of each kind a user may hold open at once (0: no cap)."""

    def __init__(self, limits: dict[str, int]) -> None:
        self._limits = dict(limits)
        self._held: Counter[tuple[str, str]] = Counter()

    def limit(self, kind: str) -> int:
        return self._limits.get(kind, 0)

    def held(self, kind: str, user_id: str) -> int:
        return self._held[(kind, user_id)]

    def take(self, kind: str, user_id: str) -> Slot:
        """A slot of `kind` for `user_id`, or 429 TOO_MANY_OPEN with the usage in details."""
        key = (kind, user_id)
        limit = self._limits.get(kind, 0)
        held = self._held[key]
        if limit and held >= limit:
            raise ApiError(
                429,
                "TOO_MANY_OPEN",
                f"at most {limit} {kind} open at once per user; close one first",
                details={"kind": kind, "open": str(held), "limit": str(limit)},
            )
        self._held[key] = held + 1
        return Slot(self, key)

    def give_back(self, key: tuple[str, str]) -> None:
        left = self._held[key] - 1
        if left > 0:
            self._held[key] = left
        else:
            del self._held[key]


@dataclass(frozen=True)
class MessageRate:
    """`per_second` messages a socket may send on average, `burst` at once; after `strikes`
    refused messages within STRIKE_WINDOW seconds the socket is closed (0 per_second: off)."""

    per_second: float
    burst: int
    strikes: int

    @property
    def unlimited(self) -> bool:
        return self.per_second <= 0


STRIKE_WINDOW = 10.0


class TokenBucket:
    """One socket's message budget. `take()` says whether a message may go on; `abusive`
    turns true once the socket kept sending past its rate (refused `strikes` times within
    STRIKE_WINDOW seconds)."""

    __slots__ = ("_rate", "_stamp", "_strike_start", "_strikes", "_tokens")

    def __init__(self, rate: MessageRate) -> None:
        self._rate = rate
        self._tokens = float(rate.burst)
        self._stamp = time.monotonic()
        self._strikes = 0
        self._strike_start = 0.0

    def take(self) -> bool:
        rate = self._rate
        if rate.unlimited:
            return True
        now = time.monotonic()
        self._tokens = min(rate.burst, self._tokens + (now - self._stamp) * rate.per_second)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        if now - self._strike_start > STRIKE_WINDOW:
            self._strike_start, self._strikes = now, 0
        self._strikes += 1
        return False

    @property
    def abusive(self) -> bool:
        return bool(self._rate.strikes) and self._strikes >= self._rate.strikes
