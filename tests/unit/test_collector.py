"""The facade's paced full collections (services/runtime/collector.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator

import pytest

from services.runtime.collector import NEVER, PacedFullCollections
from tests.waiting import until


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
async def paced() -> AsyncIterator[PacedFullCollections]:
    before = gc.get_threshold()
    collections = PacedFullCollections(every=0.05)
    collections.start()
    yield collections
    await collections.stop()
    assert gc.get_threshold() == before


async def test_cpython_does_not_run_a_full_collection_while_paced(
    paced: PacedFullCollections,
) -> None:
    assert gc.get_threshold()[2] == NEVER
    full_before = gc.get_stats()[2]["collections"]
    # Far more survivors than a quarter of the oldest generation: CPython's own rule would run
    # a full collection several times over while these are made (no await: the paced one
    # cannot run meanwhile).
    kept = [[index] for index in range(400_000)]
    assert gc.get_stats()[2]["collections"] == full_before
    assert len(kept) == 400_000


async def test_garbage_in_the_oldest_generation_is_collected_on_the_clock(
    paced: PacedFullCollections,
) -> None:
    cycle = Cycle()
    gone = weakref.ref(cycle)
    gc.collect(1)  # the cycle survives the young collections: it is in the oldest generation
    assert gc.is_tracked(cycle)
    del cycle
    gc.collect(1)  # young collections do not look there
    assert gone() is not None
    await until(lambda: gone() is None, "the paced full collection")
    assert paced.collections >= 1
