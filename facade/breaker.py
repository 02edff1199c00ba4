"""A small circuit breaker per domain service, in front of its gRPC calls.

After `threshold` consecutive calls the service never answered (UNAVAILABLE with no status
of its own), calls fail fast for `cooldown` seconds; then one trial call goes through
(half-open): its outcome closes the circuit or opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from facade.envelope import ApiError

THRESHOLD = 5
COOLDOWN = 5.0


class CircuitBreaker:
    def __init__(
        self,
        service: str,
        *,
        threshold: int = THRESHOLD,
        cooldown: float = COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0
        self._trial = False

    @property
    def state(self) -> str:
        if self._failures < self._threshold:
            return "closed"
        return "half-open" if self._clock() >= self._open_until else "open"

    def admit(self) -> None:
        """Let a call through, or raise 503 while the circuit is open."""
        if self._failures < self._threshold:
            return
        wait = self._open_until - self._clock()
        if wait <= 0 and not self._trial:
            self._trial = True  # half-open: this call is the trial
            return
        raise ApiError(
            503,
            "SERVICE_UNAVAILABLE",
            f"the {self.service} service is unavailable; retry shortly",
            retry_after=max(wait, 1.0),
        )

    def record(self, *, reached: bool) -> None:
        """The outcome of an admitted call: did the service answer (even with an error)?"""
        self._trial = False
        if reached:
            self._failures = 0
            return
        self._failures += 1
        if self._failures >= self._threshold:
            self._open_until = self._clock() + self._cooldown

    def reachable_again(self) -> None:
        """The service's channel is READY again (a replica connected and, health-checked, says
        SERVING): an open circuit half-opens now rather than at the end of its cooldown, as
        Envoy returns a host to the pool once its active health check passes."""
        if self._failures >= self._threshold:
            self._open_until = min(self._open_until, self._clock())

    def abandon(self) -> None:
        """An admitted call ended without an outcome (the client went away)."""
        self._trial = False
