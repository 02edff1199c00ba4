"""bench's one percentile: nearest rank, the value of rank ceil(p * n)."""

from __future__ import annotations

import pytest

from bench.measures import percentile


@pytest.mark.parametrize(
    ("count", "fraction", "expected"),
    [
        (100, 0.99, 99),  # 0.99 * 100 is 99.00000000000001 as a float: still rank 99
        (100, 0.5, 50),
        (42, 0.5, 21),  # a whole odd product is its own rank, not one up
        (40, 0.5, 20),
        (2000, 0.99, 1980),
        (3, 0.5, 2),  # 1.5: rank 2
        (100, 1.0, 100),
        (100, 0.0, 1),  # rank 0 is the first value
        (1, 0.99, 1),
    ],
)
def test_nearest_rank(count: int, fraction: float, expected: int) -> None:
    values = list(range(count, 0, -1))  # unsorted: sorted inside
    assert percentile(values, fraction) == expected


def test_no_values_is_zero() -> None:
    assert percentile([], 0.99) == 0.0
