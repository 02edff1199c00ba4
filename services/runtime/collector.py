"""The cyclic garbage collector's setting for a service process, applied once it has started."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Keep the collector off what start-up allocated (modules, servers, configuration): it
    lives as long as the process, and every full collection would walk all of it again. Measured
    on GetPerformance (issue 16's bench, which calls this same function first, as a service
    does at start): cyclic collection fell from ~28 to ~6 ms a call, the p99 tail with it."""
    gc.freeze()
