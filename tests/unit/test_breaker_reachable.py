"""A service back from an outage is tried at once (found by the fault suite: PostgreSQL back,
the services SERVING again, and clients still refused for the rest of the breaker's 5 s
cooldown). The facade tells its breaker when the service's channel is READY again."""

from __future__ import annotations

import pytest

from facade.breaker import CircuitBreaker
from facade.envelope import ApiError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def opened(clock: Clock) -> CircuitBreaker:
    breaker = CircuitBreaker("portfolio", threshold=5, cooldown=5.0, clock=clock)
    for _ in range(5):
        breaker.admit()
        breaker.record(reached=False)
    return breaker


def test_an_open_circuit_half_opens_as_soon_as_the_service_is_reachable_again() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now += 1.0
    breaker.reachable_again()
    assert breaker.state == "half-open"
    breaker.admit()  # the trial, 4 s before the cooldown would have let it
    with pytest.raises(ApiError):
        breaker.admit()
    breaker.record(reached=True)
    assert breaker.state == "closed"


def test_a_trial_that_fails_opens_the_circuit_for_a_whole_cooldown_again() -> None:
    clock = Clock()
    breaker = opened(clock)
    breaker.reachable_again()
    breaker.admit()
    breaker.record(reached=False)
    assert breaker.state == "open"
    clock.now += 4.9
    assert breaker.state == "open"


def test_reachable_again_leaves_a_closed_circuit_closed() -> None:
    breaker = CircuitBreaker("users", threshold=5, clock=Clock())
    for _ in range(4):
        breaker.record(reached=False)
    breaker.reachable_again()
    assert breaker.state == "closed"
    breaker.record(reached=False)
    assert breaker.state == "open"
