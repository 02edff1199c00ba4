"""The login guard's delays: free failures, then a doubling wait up to a ceiling."""

from __future__ import annotations

from services.runtime.ratelimit import Rate
from services.users.guard import LoginPolicy

POLICY = LoginPolicy(
    free_failures=5,
    remember=86400.0,
    first_delay=1.0,
    max_delay=900.0,
    per_address=Rate(20, 900.0),
    per_account=Rate(20, 900.0),
)


def test_the_free_failures_cost_nothing_and_each_further_one_doubles_the_wait() -> None:
    delays = [POLICY.delay(n, under_attack=False) for n in range(1, 12)]
    assert delays == [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32]


def test_the_wait_stops_growing_at_the_ceiling_however_many_the_failures() -> None:
    assert POLICY.delay(15, under_attack=False) == 512
    assert POLICY.delay(16, under_attack=False) == 900
    assert POLICY.delay(10**6, under_attack=False) == 900


def test_an_account_under_attack_gives_failing_addresses_no_free_failures() -> None:
    delays = [POLICY.delay(n, under_attack=True) for n in range(1, 5)]
    assert delays == [1, 2, 4, 8]
