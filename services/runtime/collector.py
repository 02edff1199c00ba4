"""The cyclic garbage collector's settings for a service process, applied once it has started."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

# How often a process whose full collections are paced runs one (seconds).
FULL_COLLECTION_EVERY = 300.0
# The oldest generation's threshold while paced: CPython never reaches it on its own.
NEVER = 1 << 30


def freeze_startup_objects() -> None:
    """Keep the collector off what start-up allocated (modules, servers, configuration): it
    lives as long as the process, and every full collection would walk all of it again. Measured
    on GetPerformance (issue 16's bench, which calls this same function first, as a service
    does at start): cyclic collection fell from ~28 to ~6 ms a call, the p99 tail with it."""
    gc.freeze()


class PacedFullCollections:
    """Full collections on a clock instead of CPython's own rule, for a process that holds many
    long-lived objects (the facade's sockets).

    CPython collects the oldest generation whenever the objects promoted into it since the last
    full collection reach a quarter of it. With 10,000 sockets open (about 900,000 tracked
    objects), the objects that merely outlive a few young collections (a step's frames, a
    heartbeat's timer) met that every 20-40 s, and each full collection stopped the loop for
    600-780 ms on this machine: one market step in 25 reached its sockets that much late. Paced,
    the same pause comes every `every` seconds at most; young collections run as before, and
    cyclic garbage that reached the oldest generation waits at most `every` seconds."""

    def __init__(self, every: float = FULL_COLLECTION_EVERY) -> None:
        self._every = every
        self._task: asyncio.Task[None] | None = None
        self._threshold = gc.get_threshold()
        self.collections = 0

    def start(self) -> None:
        young, middle, _ = self._threshold
        gc.set_threshold(young, middle, NEVER)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        gc.set_threshold(*self._threshold)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            started = time.perf_counter()
            found = gc.collect()
            self.collections += 1
            log.debug(
                "full collection",
                extra={"collected": found, "ms": round((time.perf_counter() - started) * 1e3, 1)},
            )
